// Other participants' cursors: a coloured arrow with their name, on the image point they
// point at (so a cursor means the same pixel whatever each person's zoom).
import { h } from './dom.js'

export class Cursors {
  constructor (container, view) {
    this.container = container
    this.view = view
    this.elements = new Map() // client id -> element
  }

  render (peers) {
    const seen = new Set()
    for (const peer of peers) {
      if (!peer.cursor) continue
      seen.add(peer.clientId)
      let el = this.elements.get(peer.clientId)
      if (!el) {
        el = h('div', { class: 'cursor', 'aria-hidden': 'true' }, h('span', { class: 'cursor-name' }))
        this.container.append(el)
        this.elements.set(peer.clientId, el)
      }
      el.style.setProperty('--c', peer.colour)
      el.firstChild.textContent = peer.name
      el.dataset.x = peer.cursor[0]
      el.dataset.y = peer.cursor[1]
    }
    for (const [id, el] of this.elements) {
      if (!seen.has(id)) {
        el.remove()
        this.elements.delete(id)
      }
    }
    this.position()
  }

  position () {
    for (const el of this.elements.values()) {
      const [sx, sy] = this.view.toScreen(Number(el.dataset.x), Number(el.dataset.y))
      el.style.transform = `translate(${sx}px, ${sy}px)`
    }
  }
}
