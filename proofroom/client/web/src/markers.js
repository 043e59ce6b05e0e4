// Pins as DOM markers over the canvas: crisp at any zoom, focusable, and hit-tested by the
// browser. Each marker's bottom centre sits on its pin's image point. A pin's author can
// drag its marker to move the pin (a region moves with it).
import { h } from './dom.js'

const DRAG_THRESHOLD = 5

export class Markers {
  constructor (container, view, { onSelect, onMove = () => {}, canMove = () => false }) {
    this.container = container
    this.view = view
    this.onSelect = onSelect
    this.onMove = onMove
    this.canMove = canMove
    this.elements = new Map() // pin id -> element
    this.pins = []
    this.drag = null // {id, el, pointerId, from: [sx, sy], tip: [sx, sy], moved}
  }

  /** Create, update and remove markers to match `pins`; `state` holds selection and jobs. */
  render (pins, { selectedId, userId, busyPins, showResolved, nameOf }) {
    const seen = new Set()
    for (const pin of pins) {
      if (pin.status === 'resolved' && !showResolved && pin.id !== selectedId) continue
      seen.add(pin.id)
      let el = this.elements.get(pin.id)
      if (!el) {
        el = h('button', {
          class: 'pin',
          type: 'button',
          dataset: { pinId: pin.id },
          onpointerdown: (e) => {
            e.stopPropagation()
            delete el.dataset.dragged // a touch move may end without a click
            this._grab(e, pin.id)
          },
          onpointermove: (e) => this._drag(e),
          onpointerup: (e) => this._drop(e),
          onpointercancel: (e) => this._drop(e, true),
          onclick: (e) => {
            e.stopPropagation()
            if (el.dataset.dragged) delete el.dataset.dragged // the click that ends a move
            else this.onSelect(pin.id)
          }
        }, h('span', { class: 'pin-n' }))
        this.container.append(el)
        this.elements.set(pin.id, el)
      }
      el.firstChild.textContent = String(pin.number)
      el.classList.toggle('resolved', pin.status === 'resolved')
      el.classList.toggle('selected', pin.id === selectedId)
      el.classList.toggle('mine', pin.author === userId)
      el.classList.toggle('busy', busyPins.has(pin.id))
      el.dataset.x = pin.x
      el.dataset.y = pin.y
      const label = `Pin ${pin.number} by ${nameOf(pin.author)}: ${pin.text}`
      el.setAttribute('aria-label', label.slice(0, 300))
      el.title = label.slice(0, 300)
    }
    for (const [id, el] of this.elements) {
      if (!seen.has(id)) {
        el.remove()
        this.elements.delete(id)
      }
    }
    this.position()
  }

  _grab (e, id) {
    if ((e.button !== 0 && e.pointerType === 'mouse') || this.drag || !this.canMove(id)) return
    const el = this.elements.get(id)
    const [sx, sy] = this.view.toScreen(Number(el.dataset.x), Number(el.dataset.y))
    el.setPointerCapture(e.pointerId)
    this.drag = { id, el, pointerId: e.pointerId, from: [e.clientX, e.clientY], tip: [sx, sy], at: [sx, sy], moved: false }
  }

  _drag (e) {
    const d = this.drag
    if (!d || e.pointerId !== d.pointerId) return
    const dx = e.clientX - d.from[0]
    const dy = e.clientY - d.from[1]
    if (!d.moved && Math.hypot(dx, dy) < DRAG_THRESHOLD) return
    d.moved = true
    d.el.classList.add('dragging')
    // The tip follows the pointer, kept on the picture.
    const [ix, iy] = this._onImage(d.tip[0] + dx, d.tip[1] + dy)
    d.at = this.view.toScreen(ix, iy)
    d.el.style.transform = `translate(${d.at[0]}px, ${d.at[1]}px)`
  }

  _drop (e, cancelled = false) {
    const d = this.drag
    if (!d || e.pointerId !== d.pointerId) return
    this.drag = null
    d.el.classList.remove('dragging')
    if (!d.moved) return
    d.el.dataset.dragged = '1'
    if (cancelled) {
      delete d.el.dataset.dragged
      this.position()
      return
    }
    const [x, y] = this._onImage(...d.at)
    // Shown where it was dropped at once; the document's change follows.
    d.el.dataset.x = x
    d.el.dataset.y = y
    this.position()
    this.onMove(d.id, x, y)
  }

  _onImage (sx, sy) {
    const { view } = this
    const [x, y] = view.toImage(sx, sy)
    const clamp = (v, max) => Math.round(Math.max(0, Math.min(max, v)) * 100) / 100
    return [clamp(x, view.imageWidth), clamp(y, view.imageHeight)]
  }

  /** Move every marker to its pin's point in the current view. */
  position () {
    const { view } = this
    for (const el of this.elements.values()) {
      if (this.drag && this.drag.moved && this.drag.el === el) continue
      const [sx, sy] = view.toScreen(Number(el.dataset.x), Number(el.dataset.y))
      const hidden = sx < -40 || sy < -40 || sx > view.width + 40 || sy > view.height + 40
      el.style.display = hidden ? 'none' : ''
      if (!hidden) el.style.transform = `translate(${sx}px, ${sy}px)`
    }
  }
}
