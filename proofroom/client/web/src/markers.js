// Pins as DOM markers over the canvas: crisp at any zoom, focusable, and hit-tested by the
// browser. Each marker's bottom centre sits on its pin's image point.
import { h } from './dom.js'

export class Markers {
  constructor (container, view, { onSelect }) {
    this.container = container
    this.view = view
    this.onSelect = onSelect
    this.elements = new Map() // pin id -> element
    this.pins = []
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
          onpointerdown: (e) => e.stopPropagation(),
          onclick: (e) => {
            e.stopPropagation()
            this.onSelect(pin.id)
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

  /** Move every marker to its pin's point in the current view. */
  position () {
    const { view } = this
    for (const el of this.elements.values()) {
      const [sx, sy] = view.toScreen(Number(el.dataset.x), Number(el.dataset.y))
      const hidden = sx < -40 || sy < -40 || sx > view.width + 40 || sy > view.height + 40
      el.style.display = hidden ? 'none' : ''
      if (!hidden) el.style.transform = `translate(${sx}px, ${sy}px)`
    }
  }
}
