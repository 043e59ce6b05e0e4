// Meeting replay: a session's history (GET /api/sessions/{id}/replay, owners and the
// admin) with a scrubber that shows the pins, their threads and the versions as they were
// after any event, and a download of the event log as JSON.
import { h, replace } from './dom.js'

const VERB = {
  'session.created': () => 'created the session',
  'pin.created': (e) => `added pin ${e.n}: “${clip(e.text)}”`,
  'pin.moved': (e) => `moved pin ${e.n}`,
  'pin.edited': (e) => `edited pin ${e.n}: “${clip(e.text)}”`,
  'pin.resolved': (e) => `pin ${e.n} resolved`,
  'pin.reopened': (e) => `pin ${e.n} reopened`,
  'pin.deleted': (e) => `pin ${e.n} removed`,
  'reply.created': (e) => `replied on pin ${e.n}: “${clip(e.text)}”`,
  'reply.edited': (e) => `edited a reply on pin ${e.n}`,
  'reply.deleted': (e) => `deleted a reply on pin ${e.n}`,
  'version.created': (e) => `v${e.number} for pin ${e.n}${e.via === 'upload' ? ' (upload)' : ''}`,
  'version.decision': (e) => `${DECISION[e.decision] || e.decision} v${e.number}${e.note ? `: “${clip(e.note)}”` : ''}`,
  'version.state': (e) => `v${e.number} ${STATE[e.state] || `is ${String(e.state).replace('_', ' ')}`}`
}
const STATE = {
  approved: 'is approved',
  changes_requested: 'needs changes',
  rejected: 'is rejected',
  pending: 'is waiting for review again',
  superseded: 'is superseded by another variant'
}
const DECISION = { approve: 'approved', request_changes: 'asked for changes on', reject: 'rejected' }

function clip (text, n = 60) {
  const t = String(text || '')
  return t.length > n ? t.slice(0, n - 1) + '…' : t
}

/** The pins (with threads) and versions after the first `upto` + 1 events. */
export function foldEvents (events, upto) {
  const pins = new Map()
  const versions = new Map()
  for (const e of events.slice(0, upto + 1)) {
    const pin = e.pin ? pins.get(e.pin) : null
    switch (e.kind) {
      case 'pin.created':
        pins.set(e.pin, { id: e.pin, n: e.n, x: e.x, y: e.y, text: e.text, author: e.actor, status: 'open', thread: [] })
        break
      case 'pin.moved': if (pin) Object.assign(pin, { x: e.x, y: e.y }); break
      case 'pin.edited': if (pin) pin.text = e.text; break
      case 'pin.resolved': if (pin) pin.status = 'resolved'; break
      case 'pin.reopened': if (pin) pin.status = 'open'; break
      case 'pin.deleted': pins.delete(e.pin); break
      case 'reply.created': if (pin) pin.thread.push({ id: e.comment, author: e.actor, text: e.text, deleted: false }); break
      case 'reply.edited':
      case 'reply.deleted': {
        const c = pin && pin.thread.find((x) => x.id === e.comment)
        if (c && e.kind === 'reply.edited') c.text = e.text
        if (c && e.kind === 'reply.deleted') c.deleted = true
        break
      }
      case 'version.created':
        versions.set(e.version, { id: e.version, number: e.number, pin: e.pin, state: 'pending', decisions: new Map() })
        break
      case 'version.decision': {
        const v = versions.get(e.version)
        if (v) v.decisions.set(e.actor_id, { who: e.actor, decision: e.decision, note: e.note })
        break
      }
      case 'version.state': {
        const v = versions.get(e.version)
        if (v) v.state = e.state
        break
      }
    }
  }
  return { pins, versions }
}

/**
 * Show the replay of `sessionId` in `box`; `onClose` when the person closes it.
 * The picture comes through fetch with the token in a header, never in its URL.
 */
export async function openReplay (box, api, sessionId, onClose) {
  replace(box, h('p', { class: 'muted' }, 'Loading the history…'))
  let data
  try {
    data = await api.get(`/api/sessions/${encodeURIComponent(sessionId)}/replay`)
  } catch (err) {
    return replace(box, h('p', { class: 'error' }, err.message))
  }
  const events = data.events
  // Pins are numbered in the order they were made, as in the room.
  const numbers = new Map()
  for (const e of events) {
    if (e.kind === 'pin.created' && !numbers.has(e.pin)) numbers.set(e.pin, numbers.size + 1)
    if (e.pin) e.n = numbers.get(e.pin) ?? '?'
  }
  const { width, height } = data.session
  const picture = h('img', { class: 'replay-image', alt: `${data.session.title}, as uploaded` })
  const markers = h('div', { class: 'replay-markers' })
  const stage = h('div', { class: 'replay-stage' }, picture, markers)
  // Through the CSSOM: the page's CSP refuses style attributes.
  stage.style.aspectRatio = `${width} / ${height}`
  const scrub = h('input', {
    type: 'range',
    min: 0,
    max: Math.max(0, events.length - 1),
    value: events.length - 1,
    step: 1,
    'aria-label': 'Replay position',
    oninput: () => show(Number(scrub.value))
  })
  const caption = h('p', { class: 'replay-caption', 'aria-live': 'polite' })
  const threads = h('ol', { class: 'replay-threads', 'aria-label': 'Pins at this point' })
  const list = h('ol', { class: 'replay-events', 'aria-label': 'Events' },
    events.map((e, i) => h('li', { dataset: { seq: i, kind: e.kind } },
      h('button', { type: 'button', onclick: () => { scrub.value = i; show(i) } },
        h('time', {}, clock(e.at)), ' ', e.actor ? [h('b', {}, e.actor), ' '] : null, describe(e)))))
  const step = (d) => {
    scrub.value = Math.min(events.length - 1, Math.max(0, Number(scrub.value) + d))
    show(Number(scrub.value))
  }
  replace(box,
    h('div', { class: 'toolbar-row' },
      h('h2', {}, `Replay: ${data.session.title}`),
      h('button', { type: 'button', onclick: () => download(data, sessionId) }, 'Download event log'),
      h('button', { type: 'button', onclick: onClose }, 'Close')),
    h('div', { class: 'replay-controls' },
      h('button', { type: 'button', 'aria-label': 'Previous event', onclick: () => step(-1) }, '‹'),
      scrub,
      h('button', { type: 'button', 'aria-label': 'Next event', onclick: () => step(1) }, '›')),
    caption,
    h('div', { class: 'replay-body' }, stage, h('div', { class: 'replay-side' }, threads, list)))
  show(events.length - 1)
  loadPicture(api, data.session.base, picture)

  function show (i) {
    const e = events[i]
    box.dataset.position = String(i)
    caption.textContent = e
      ? `Event ${i + 1} of ${events.length} · ${clock(e.at)} · ${e.actor ? e.actor + ' ' : ''}${describe(e)}`
      : 'No events.'
    for (const li of list.children) li.classList.toggle('current', Number(li.dataset.seq) === i)
    const { pins, versions } = foldEvents(events, i)
    replace(markers, [...pins.values()].map((p) => {
      const dot = h('span', { class: `replay-pin ${p.status}`, title: p.text, dataset: { pin: p.id } }, String(p.n))
      dot.style.left = `${(100 * p.x) / width}%`
      dot.style.top = `${(100 * p.y) / height}%`
      return dot
    }))
    replace(threads, pins.size === 0
      ? h('li', { class: 'muted' }, 'No pins yet.')
      : [...pins.values()].map((p) => h('li', { class: `replay-thread ${p.status}`, dataset: { pin: p.id } },
          h('p', {}, h('b', {}, `${p.n}. `), p.text, ' ', h('span', { class: 'muted' }, `— ${p.author || 'someone'}, ${p.status}`)),
          p.thread.length ? h('ul', {}, p.thread.map((c) => h('li', { class: c.deleted ? 'deleted' : '' },
            h('b', {}, c.author || 'someone'), ': ', c.deleted ? '(deleted)' : c.text))) : null,
          versionsOf(versions, p.id))))
  }
}

function versionsOf (versions, pinId) {
  const own = [...versions.values()].filter((v) => v.pin === pinId)
  if (!own.length) return null
  return h('ul', { class: 'replay-versions' }, own.map((v) => h('li', { class: `state-${v.state}` },
    `v${v.number}: ${v.state.replace('_', ' ')}`,
    [...v.decisions.values()].map((d) => h('span', { class: 'muted' }, ` · ${d.who || 'someone'} ${DECISION[d.decision] || d.decision}${d.note ? ` “${clip(d.note, 40)}”` : ''}`)))))
}

function describe (e) {
  const text = VERB[e.kind]
  return text ? text(e) : e.kind
}

function clock (at) {
  return at ? new Date(at * 1000).toLocaleTimeString() : ''
}

async function loadPicture (api, blobId, img) {
  try {
    const response = await api.request('GET', `/blobs/${encodeURIComponent(blobId)}`)
    img.src = URL.createObjectURL(await response.blob())
  } catch (_err) {
    img.alt = 'The picture could not be loaded.'
  }
}

function download (data, sessionId) {
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' })
  const a = h('a', { href: URL.createObjectURL(blob), download: `proofroom-${sessionId}-events.json` })
  document.body.append(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(a.href), 0)
}

/** In the room, for owners: `button` opens the replay in `dialog` (a modal over the room). */
export function mountReplayButton (button, dialog, api, sessionId) {
  button.hidden = false
  const close = () => dialog.close()
  dialog.addEventListener('close', () => replace(dialog))
  button.addEventListener('click', () => {
    dialog.showModal()
    openReplay(dialog, api, sessionId, close)
  })
}
