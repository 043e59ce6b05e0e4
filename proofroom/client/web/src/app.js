// The review room's shared state: who I am, what is selected, which tool is active, and
// the scene the canvas and overlay draw from. Panels read it and listen to its events.
import { Emitter } from './events.js'
import { can } from './contract.js'

export class App extends Emitter {
  constructor ({ api, me, session, conn, store, presence, view, images }) {
    super()
    Object.assign(this, { api, me, session, conn, store, presence, view, images })
    this.caps = {
      comment: can(me.role, 'comment'),
      edit: can(me.role, 'edit'),
      decide: can(me.role, 'decide'),
      administer: can(me.role, 'administer')
    }
    this.state = {
      tool: 'hand',
      selectedPin: null,
      selectedLayer: null,
      compare: null, // {mode: slider|side|toggle|diff, showAfter, slider, diff}
      showResolved: true,
      brush: 24, // brush radius in screen pixels
      draft: null, // {box, color} while dragging a region, a mask box or a lock
      tab: 'pins'
    }
    this.masks = new Map() // pin id -> painted strokes (image pixels)
    this.jobBoxes = new Map() // job id -> the box this page asked the fix for
    this.redraw = () => {}
  }

  set (key, value) {
    if (this.state[key] === value) return
    this.state[key] = value
    this.emit(`change:${key}`, value)
    this.redraw()
  }

  /** Show a panel tab (and, on a small screen, slide the panel up). */
  showTab (tab) {
    this.set('tab', tab)
    this.emit('panel-open')
  }

  toast (message, kind = 'info') {
    this.emit('toast', { message, kind })
  }

  selectPin (id, { reveal = false } = {}) {
    this.set('selectedPin', id)
    if (id) {
      this.showTab('pins')
      const pin = this.store.pin(id)
      if (pin && reveal) this.view.reveal(pin.region || [pin.x - 1, pin.y - 1, 2, 2])
    }
  }

  selectLayer (id) {
    if (this.state.selectedLayer !== id) this.set('compare', null)
    this.set('selectedLayer', id)
  }

  /**
   * The layers drawn now (DESIGN.md section 6): the approved chain in document order, then
   * the one candidate a person selected on top, never every pending version at once.
   */
  shownLayers () {
    const layers = this.store.layerList()
    const shown = layers.filter((l) => l.state === 'approved')
    const selected = this.state.selectedLayer && this.store.layer(this.state.selectedLayer)
    if (selected && selected.state !== 'approved') shown.push(selected)
    return shown
  }

  maskOf (pinId) {
    if (!this.masks.has(pinId)) this.masks.set(pinId, [])
    return this.masks.get(pinId)
  }

  /** What the image canvas draws. */
  imageScene () {
    const { width, height, base, preview } = this.session
    const layers = this.shownLayers()
    const previews = []
    for (const job of this.store.jobList()) {
      if (job.status !== 'running' || !job.preview) continue
      const box = this.previewBox(job)
      if (box) previews.push(this._preview(job.preview, box))
    }
    let compare = null
    const c = this.state.compare
    const layer = c && this.store.layer(this.state.selectedLayer)
    if (layer) compare = { ...c, layer, before: this.store.parentChain(layer) }
    return { width, height, base, preview, layers, previews, compare }
  }

  /** Where a job's preview goes: the box the server gives, the one we asked, or the region. */
  previewBox (job) {
    if (Array.isArray(job.box) && job.box.length === 4) return job.box
    if (this.jobBoxes.has(job.id)) return this.jobBoxes.get(job.id)
    return this.store.pin(job.pin_id)?.region || null
  }

  _preview (id, box) {
    // Kept between frames so a preview fades in once, when it first arrives.
    if (!this._previews) this._previews = new Map()
    let p = this._previews.get(id)
    if (!p) {
      p = { id, box }
      this._previews.set(id, p)
    }
    return p
  }

  /** What the overlay draws. */
  overlayScene () {
    const s = this.state
    const regions = []
    for (const pin of this.store.pinList()) {
      if (!pin.region) continue
      if (pin.status === 'resolved' && !s.showResolved && pin.id !== s.selectedPin) continue
      regions.push({ region: pin.region, selected: pin.id === s.selectedPin, resolved: pin.status === 'resolved' })
    }
    const jobBoxes = []
    for (const job of this.store.jobList()) {
      if (job.status === 'queued' || job.status === 'running') {
        const box = this.previewBox(job)
        if (box) jobBoxes.push(box)
      }
    }
    const layer = s.selectedLayer && this.store.layer(s.selectedLayer)
    return {
      hideMarks: s.compare && s.compare.mode === 'side',
      locks: this.store.metaInfo().locks,
      regions,
      jobBoxes,
      layerBox: layer && !s.compare ? layer.box : null,
      mask: s.selectedPin && this.caps.edit ? this.masks.get(s.selectedPin) : null,
      draft: s.draft
    }
  }
}
