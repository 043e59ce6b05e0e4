// Connection state in the top bar and as a banner, and short messages (toasts).
import { h, replace } from './dom.js'

const LABEL = {
  connecting: 'Connecting…',
  synced: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
  closed: 'Disconnected'
}

export function mountStatus (app, { badge, banner, toasts }) {
  const { conn } = app
  function render () {
    const state = conn.state
    document.body.dataset.conn = state
    badge.dataset.state = state
    badge.textContent = LABEL[state] || state
    badge.title = conn.why || LABEL[state]
    if (state === 'closed') {
      showBanner('error', conn.why, h('button', { type: 'button', onclick: () => location.reload() }, 'Reload'))
    } else if (state === 'offline') {
      showBanner('warn', 'You are offline. What you add stays here and merges when the connection is back.')
    } else if (state === 'reconnecting') {
      showBanner('warn', conn.why || 'The connection was lost. Reconnecting… your edits are kept.')
    } else {
      banner.hidden = true
    }
  }
  function showBanner (kind, text, ...extra) {
    banner.className = `banner ${kind}`
    replace(banner, h('span', {}, text), ...extra)
    banner.hidden = false
  }
  conn.on('state', render)
  conn.on('denied', (reason) => app.toast(`The server refused a change: ${reason}`, 'error'))
  app.on('toast', ({ message, kind }) => {
    const el = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message)
    toasts.append(el)
    setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000)
    while (toasts.children.length > 4) toasts.firstChild.remove()
  })
  render()
}

/** Replace the page with a message when the room cannot open at all. */
export function fatal (message) {
  document.body.dataset.state = 'failed'
  const box = document.getElementById('fatal')
  if (box) {
    replace(box, h('h2', {}, 'This review cannot open'), h('p', {}, message))
    box.hidden = false
  }
}
