// The box that opens where a pin is dropped, to write what is wrong. The pin is created
// only when its text is sent, so nobody sees empty pins.
import { h } from './dom.js'
import { attachMentions } from './mentions.js'
import { MAX_TEXT } from './contract.js'

export class PinComposer {
  constructor (host, app) {
    this.host = host
    this.app = app
    this.draft = null
    this.el = null
    app.view.on('change', () => this.position())
  }

  open (draft) {
    this.close()
    this.draft = draft
    const text = h('textarea', {
      class: 'composer-text',
      rows: 3,
      maxlength: MAX_TEXT,
      placeholder: draft.region ? 'What should change in this region?' : 'What is wrong here?',
      'aria-label': 'Pin text'
    })
    const send = () => this.submit(text.value)
    text.addEventListener('keydown', (e) => {
      if (e.defaultPrevented) return // the @mention list took the key
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault()
        send()
      } else if (e.key === 'Escape') {
        e.preventDefault()
        this.close()
      }
      e.stopPropagation()
    })
    this.el = h('form', {
      class: 'composer',
      onpointerdown: (e) => e.stopPropagation(),
      onsubmit: (e) => {
        e.preventDefault()
        send()
      }
    },
    text,
    h('div', { class: 'composer-actions' },
      h('span', { class: 'hint' }, 'Enter to add · Shift+Enter new line'),
      h('button', { type: 'button', class: 'ghost', onclick: () => this.close() }, 'Cancel'),
      h('button', { type: 'submit', class: 'primary' }, 'Add pin')))
    // On a small screen the panel is a sheet over the canvas: fold it away while writing.
    document.body.classList.remove('sidebar-open')
    this.host.append(this.el)
    attachMentions(text, () => this.app.presence.knownNames())
    this.position()
    this.app.set('draft', draft.region ? { box: draft.region, color: '#ffd24a' } : null)
    text.focus()
  }

  submit (raw) {
    const text = raw.trim()
    if (!text || !this.draft) return
    const { x, y, region } = this.draft
    const id = this.app.store.addPin({ x, y, text, region })
    this.close()
    if (id) this.app.selectPin(id)
  }

  close () {
    if (this.el) this.el.remove()
    this.el = null
    if (this.draft) this.app.set('draft', null)
    this.draft = null
  }

  get isOpen () {
    return this.el !== null
  }

  position () {
    if (!this.el || !this.draft) return
    const { view } = this.app
    const [sx, sy] = view.toScreen(this.draft.x, this.draft.y)
    const w = this.el.offsetWidth || 280
    const hgt = this.el.offsetHeight || 130
    // Beside the point, never over it: right and below by preference, else the first
    // other corner where the box fits on the stage; a marker's head sits above its point.
    const gap = 14
    const head = 44
    const fits = ([x, y]) => x >= 8 && y >= 8 && x + w <= view.width - 8 && y + hgt <= view.height - 8
    const places = [
      [sx + gap, sy + gap],
      [sx - gap - w, sy + gap],
      [sx + gap, sy - head - hgt],
      [sx - gap - w, sy - head - hgt]
    ]
    let [x, y] = places.find(fits) || places[0]
    x = Math.max(8, Math.min(view.width - w - 8, x))
    y = Math.max(8, Math.min(view.height - hgt - 8, y))
    this.el.style.transform = `translate(${x}px, ${y}px)`
  }
}
