// Keyboard shortcuts for the common actions (ignored while typing), and their help sheet.
import { h, isTyping } from './dom.js'
import { TOOLS } from './toolbar.js'
import { startCompare } from './panels/layers.js'

const HELP = [
  ['H / Space (hold)', 'Pan'],
  ['C', 'Drop a pin (click) or a region (drag)'],
  ['B / E / X', 'Paint, erase or box a fix mask'],
  ['L', 'Lock a region (owners)'],
  ['+ / −', 'Zoom in / out'],
  ['0 / 1', 'Fit / actual pixels'],
  ['J / K', 'Next / previous open pin'],
  ['R', 'Resolve or reopen your selected pin'],
  ['Enter', 'Reply to the selected pin'],
  ['S / T / D', 'Compare the selected version: slider, toggle, difference'],
  [', / .', 'On a clip: previous / next frame'],
  ['[ / ]', 'Previous / next variant of the selected version (shown on the canvas)'],
  ['Ctrl+Enter', 'Send (reply, fix)'],
  ['Esc', 'Leave a text field; close, stop comparing, stop following, deselect'],
  ['?', 'This help']
]

export function mountShortcuts (app, { help, composer, pinsPanel }) {
  const { view, store } = app
  help.append(
    h('h2', {}, 'Keyboard shortcuts'),
    h('dl', { class: 'keys' }, HELP.flatMap(([k, v]) => [h('dt', {}, h('kbd', {}, k)), h('dd', {}, v)])),
    h('form', { method: 'dialog' }, h('button', { class: 'primary' }, 'Close')))
  const moved = () => app.emit('user-moved-view')
  const toolKeys = Object.fromEntries(TOOLS.filter((t) => !t.cap || app.caps[t.cap]).map((t) => [t.key.toLowerCase(), t.tool]))

  function stepPin (direction) {
    const open = store.pinList().filter((p) => p.status === 'open')
    if (!open.length) return
    const at = open.findIndex((p) => p.id === app.state.selectedPin)
    const next = open[(at + direction + open.length) % open.length] || open[0]
    app.selectPin(next.id, { reveal: true })
  }

  window.addEventListener('keydown', (e) => {
    if (e.defaultPrevented) return
    if (isTyping(e)) {
      // Esc leaves the field (what was typed stays), so the next letters are shortcuts
      // again instead of text in the reply box.
      if (e.key === 'Escape' && !e.isComposing) {
        e.target.blur()
        e.preventDefault()
      }
      return
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return
    if (help.open) return // the dialog handles its own keys (Escape closes it)
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key
    const pin = app.state.selectedPin && store.pin(app.state.selectedPin)
    if (toolKeys[key]) app.set('tool', toolKeys[key])
    else if (key === '+' || key === '=') { view.zoomAt(1.25); moved() } else if (key === '-' || key === '_') { view.zoomAt(0.8); moved() } else if (key === '0') { view.fit(); moved() } else if (key === '1') {
      view.zoomAt(1 / view.scale)
      moved()
    } else if (key === 'j') stepPin(1)
    else if (key === 'k') stepPin(-1)
    else if (key === 'r' && pin && app.caps.comment && pin.author === app.me.userId) {
      store.setStatus(pin.id, pin.status === 'open' ? 'resolved' : 'open')
    } else if (key === 'Enter' && pin && app.caps.comment) {
      app.showTab('pins')
      pinsPanel.focusReply()
    } else if (key === 's') startCompare(app, 'slider')
    else if (key === 't') startCompare(app, 'toggle')
    else if (key === 'd') startCompare(app, 'diff')
    else if (key === '?') help.showModal()
    else if (key === 'Escape') escape()
    else return
    e.preventDefault()
  })

  function escape () {
    if (composer.isOpen) composer.close()
    else if (app.state.compare) app.set('compare', null)
    else if (app.presence.following !== null) app.presence.follow(null)
    else if (app.state.selectedLayer) app.selectLayer(null)
    else if (app.state.selectedPin) app.selectPin(null)
  }
}
