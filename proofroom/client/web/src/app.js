// The review room's shared state: who I am, what is selected, which tool is active, and
// the scene the canvas and overlay draw from. Panels read it and listen to its events.
import { Emitter } from './events.js'
import { ORIGINAL_REVISION, can } from './contract.js'

// Pictures longer than this on a side are drawn from their preview until they decode.
const BIG_PICTURE = 2048

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
      tab: 'pins',
      revision: ORIGINAL_REVISION, // the revision shown (DESIGN.md section 3)
      frame: 0 // on a clip: the frame shown
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
      // A pin on another revision brings it up; a pin on a clip, its frame.
      if (pin && pin.revision !== this.state.revision) this.selectRevision(pin.revision)
      if (pin && pin.frame !== null) this.emit('seek-frame', pin.frame)
      if (pin && reveal) this.view.reveal(pin.region || [pin.x - 1, pin.y - 1, 2, 2])
    }
  }

  /** The revision shown: its entry, or the original as the session describes it. */
  revision () {
    const rev = this.store.revision(this.state.revision)
    if (rev) return rev
    const { width, height, base } = this.session
    return { id: ORIGINAL_REVISION, kind: 'original', media: 'image', image: base, width, height, state: 'approved', decisions: {}, index: 0 }
  }

  selectRevision (id) {
    if (this.state.revision === id) return
    this.set('compare', null)
    this.set('selectedLayer', null)
    this.set('frame', 0)
    this.set('revision', id)
  }

  /** Whether a pin belongs to the revision shown (on a clip: any frame). */
  onRevision (pin) {
    return pin.revision === this.state.revision
  }

  /** Whether a pin shows on the stage now: its revision, and on a clip its frame (or range). */
  onStage (pin) {
    if (!this.onRevision(pin)) return false
    if (this.revision().media !== 'video') return true
    const f = this.state.frame
    if (pin.frames) return f >= pin.frames[0] && f <= pin.frames[1]
    return pin.frame === null || pin.frame === f
  }

  stagePins () {
    return this.store.pinList().filter((p) => this.onStage(p))
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
    const layers = this.store.layerList().filter((l) => l.revision === this.state.revision)
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
    const rev = this.revision()
    if (rev.media === 'video') return this.clipScene(rev)
    const original = rev.id === ORIGINAL_REVISION
    const { width, height } = original ? this.session : rev
    const base = original ? this.session.base : rev.image
    // A big upscale paints first as the server's small preview, as the upload does.
    const big = Math.max(width, height) > BIG_PICTURE
    const preview = original ? this.session.preview : big ? `preview:${base}` : null
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

  /**
   * A clip on the stage: its poster under the playing <video> (clip.js), or, comparing, its
   * first frame against the still it was made from, scaled to the clip's size.
   */
  clipScene (rev) {
    const { width, height } = rev
    const scene = { width, height, base: rev.poster, preview: null, layers: [], previews: [], compare: null }
    const c = this.state.compare
    if (!c || !c.clip) return scene
    const still = this.sourceStill(rev)
    if (!still) return scene
    const sx = width / still.width
    const sy = height / still.height
    const before = still.layers.map((l) => ({
      ...l, box: [l.box[0] * sx, l.box[1] * sy, l.box[2] * sx, l.box[3] * sy]
    }))
    const layer = { id: `${rev.id}:first-frame`, patch: rev.poster, box: [0, 0, width, height] }
    return { ...scene, base: still.image, compare: { ...c, layer, before } }
  }

  /** The still a revision was made from: {image, width, height, layers (approved, drawn over)}. */
  sourceStill (rev) {
    const id = rev.source && rev.source.revision
    if (!id) return null
    const src = id === ORIGINAL_REVISION ? null : this.store.revision(id)
    if (src && src.media !== 'image') return null
    const layers = (rev.source.layers || []).map((l) => this.store.layer(l)).filter(Boolean)
    return src
      ? { image: src.image, width: src.width, height: src.height, layers }
      : { image: this.session.base, width: this.session.width, height: this.session.height, layers }
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
    const original = s.revision === ORIGINAL_REVISION
    const regions = []
    for (const pin of this.stagePins()) {
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
      // Locks and fix masks are drawn on the original's pixels (fixes change v1 only).
      locks: original ? this.store.metaInfo().locks : [],
      regions,
      jobBoxes,
      layerBox: layer && !s.compare ? layer.box : null,
      mask: s.selectedPin && this.caps.edit && original ? this.masks.get(s.selectedPin) : null,
      draft: s.draft
    }
  }
}
