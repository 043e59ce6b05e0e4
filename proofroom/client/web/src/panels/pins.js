// The Pins panel: the list of pins (filterable) and, for the selected pin, its thread with
// replies, edits of one's own words, resolve and reopen, and @mentions.
import { h, replace, ago } from '../dom.js'
import { perFrame } from '../events.js'
import { renderText, mentions, attachMentions } from '../mentions.js'
import { DECISION_LABEL, MAX_TEXT, ORIGINAL_REVISION } from '../contract.js'

export function mountPinsPanel (root, app) {
  const { store, presence } = app
  const filter = h('select', { 'aria-label': 'Which pins', onchange: () => renderList() },
    h('option', { value: 'open' }, 'Open'),
    h('option', { value: 'all' }, 'All'),
    h('option', { value: 'mine' }, 'Mine'),
    h('option', { value: 'mentions' }, 'Mentioning me'))
  const count = h('span', { class: 'muted' })
  const list = h('ul', { class: 'pin-list', 'aria-label': 'Pins' })
  const listView = h('div', { class: 'pin-list-view' },
    h('div', { class: 'panel-head' }, filter, count),
    app.caps.comment
      ? h('p', { class: 'hint' }, 'Press C, then click the image to drop a pin, or drag for a region.')
      : h('p', { class: 'hint' }, 'You are viewing: pins and replies are read-only.'),
    list)
  const threadView = h('div', { class: 'thread-view', hidden: true })
  root.append(listView, threadView)

  const head = h('div', { class: 'thread-head' })
  const comments = h('ol', { class: 'comments', 'aria-label': 'Replies' })
  const replyBox = h('textarea', {
    rows: 2,
    maxlength: MAX_TEXT,
    placeholder: 'Reply… (@ to mention)',
    'aria-label': 'Reply'
  })
  const replyForm = h('form', { class: 'reply', onsubmit: (e) => { e.preventDefault(); sendReply() } },
    replyBox,
    h('button', { type: 'submit', class: 'primary' }, 'Reply'))
  replyBox.addEventListener('keydown', (e) => {
    if (e.defaultPrevented) return // the @mention list took the key
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey || !e.shiftKey) && !e.isComposing) {
      e.preventDefault()
      sendReply()
    }
  })
  attachMentions(replyBox, () => presence.knownNames())
  threadView.append(
    h('button', { type: 'button', class: 'ghost back', onclick: () => app.selectPin(null) }, '← All pins'),
    head, comments)
  if (app.caps.comment) threadView.append(replyForm)

  let editing = null // comment id being edited

  function sendReply () {
    const text = replyBox.value.trim()
    const id = app.state.selectedPin
    if (!text || !id) return
    if (store.reply(id, text)) replyBox.value = ''
  }

  function visible (pin) {
    if (!app.onRevision(pin)) return false // pins of the revision shown (revisions.js)
    const f = filter.value
    if (f === 'open') return pin.status === 'open'
    if (f === 'mine') return pin.author === app.me.userId
    if (f === 'mentions') return [pin.text, ...pin.thread.map((c) => c.text)].some((t) => mentions(t, presence.name))
    return true
  }

  const renderList = perFrame(() => {
    const pins = store.pinList().filter((p) => app.onRevision(p))
    const shown = pins.filter(visible)
    count.textContent = `${shown.length} of ${pins.length}`
    // Rebuilt as a whole: a few hundred rows take a couple of milliseconds.
    replace(list, shown.map((pin) => h('li', {},
      h('button', {
        type: 'button',
        class: `pin-row ${pin.status}`,
        dataset: { pinId: pin.id },
        onclick: () => app.selectPin(pin.id, { reveal: true })
      },
      h('span', { class: 'pin-n' }, String(pin.number)),
      pin.frame !== null ? h('span', { class: 'muted pin-frame' }, `f${pin.frame}`) : null,
      h('span', { class: 'pin-row-text' }, pin.text),
      h('span', { class: 'muted' }, pin.thread.length ? `${pin.thread.length} ↩` : ''),
      pin.status === 'resolved' ? h('span', { class: 'badge resolved' }, 'Resolved') : null))))
  })

  const renderThread = perFrame(() => {
    const pin = app.state.selectedPin && store.pin(app.state.selectedPin)
    listView.hidden = Boolean(pin)
    threadView.hidden = !pin
    if (!pin) return
    store.pinList() // numbers the pins
    const mine = pin.author === app.me.userId
    const names = presence.knownNames()
    replace(head,
      h('div', { class: 'thread-title' },
        h('span', { class: 'pin-n' }, String(pin.number)),
        h('strong', {}, presence.nameOf(pin.author)),
        h('span', { class: 'muted' }, ago(pin.created_at)),
        renumbered.has(pin.id) && renumbered.get(pin.id) !== pin.number
          ? h('span', { class: 'muted renumbered', title: 'Renumbered when pins made offline arrived' }, `was ${renumbered.get(pin.id)}`)
          : null,
        h('span', { class: `badge ${pin.status}` }, pin.status === 'open' ? 'Open' : 'Resolved')),
      h('p', { class: 'pin-text' }, renderText(pin.text, names, presence.name)),
      pin.frame !== null ? h('p', { class: 'muted pin-on-frame' }, pin.frames ? `Frames ${pin.frames[0]}–${pin.frames[1]} of the clip` : `On frame ${pin.frame} of the clip`) : null,
      pin.region ? h('p', { class: 'muted' }, `Region ${pin.region[2]}×${pin.region[3]} px at ${pin.region[0]}, ${pin.region[1]}`) : null,
      app.caps.comment && mine ? h('p', { class: 'hint' }, 'Drag its marker on the picture to move this pin.') : null,
      h('div', { class: 'actions' },
        app.caps.comment && mine
          ? h('button', {
            type: 'button',
            class: 'resolve',
            onclick: () => store.setStatus(pin.id, pin.status === 'open' ? 'resolved' : 'open')
          }, pin.status === 'open' ? 'Resolve (R)' : 'Reopen (R)')
          : null,
        app.caps.edit && pin.status === 'open' && pin.revision === ORIGINAL_REVISION
          ? h('button', { type: 'button', onclick: () => app.showTab('fix') }, 'Fix this pin…')
          : null,
        // On a clip: the pin can cover frames up to (or back to) the one shown.
        app.caps.comment && mine && pin.frame !== null
          ? h('button', {
            type: 'button',
            class: 'pin-range',
            title: 'Make this pin cover the frames from its own to the one shown',
            onclick: () => {
              const f = app.state.frame
              store.setFrames(pin.id, f === pin.frame ? null : [Math.min(f, pin.frame), Math.max(f, pin.frame)])
            }
          }, 'Cover to the frame shown')
          : null,
        app.caps.comment && mine && pin.frames
          ? h('button', { type: 'button', class: 'ghost', onclick: () => store.setFrames(pin.id, null) }, 'Only its frame')
          : null,
        h('button', { type: 'button', class: 'ghost', onclick: () => app.view.reveal(pin.region || [pin.x - 1, pin.y - 1, 2, 2]) }, 'Show')))
    if (editing) return // keep the comment being edited as it is
    // Replies and the decisions on this pin's versions, in the order they happened.
    const items = [
      ...pin.thread.map((c) => ({ at: Number(c.at) || 0, el: () => commentItem(pin, c, names) })),
      ...decisionsOn(pin).map((d) => ({ at: d.at, el: () => decisionItem(d, names) }))
    ].sort((a, b) => a.at - b.at)
    replace(comments, items.map((item) => item.el()))
  })

  /** Every decision on a version made for `pin`, as the layers in the document hold them. */
  function decisionsOn (pin) {
    const out = []
    for (const layer of store.layerList()) {
      if (layer.pin_id !== pin.id) continue
      for (const [user, d] of Object.entries(layer.decisions)) {
        if (!d || !DECISION_LABEL[d.decision]) continue
        out.push({ layer, user, decision: d.decision, note: String(d.note || ''), at: Number(d.at) || 0 })
      }
    }
    return out
  }

  function decisionItem (d, names) {
    const version = `Version ${d.layer.index + 1}`
    return h('li', { class: 'comment decision', dataset: { layerId: d.layer.id, threadDecision: d.decision } },
      h('div', { class: 'comment-meta' },
        h('strong', {}, presence.nameOf(d.user)),
        h('span', { class: 'muted' }, ago(d.at))),
      h('p', { class: 'decision-line' },
        h('span', { class: `badge decision-${d.decision}` }, DECISION_LABEL[d.decision]), ' ',
        h('button', {
          type: 'button',
          class: 'link',
          title: 'Show this version',
          onclick: () => { app.selectLayer(d.layer.id); app.showTab('layers') }
        }, version)),
      d.note ? h('p', { class: 'comment-text note' }, renderText(d.note, names, presence.name)) : null)
  }

  function commentItem (pin, c, names) {
    const own = app.caps.comment && c.author === app.me.userId && !c.deleted
    const body = c.deleted
      ? h('p', { class: 'muted deleted' }, 'Comment deleted')
      : h('p', { class: 'comment-text' }, renderText(c.text, names, presence.name))
    const item = h('li', { class: 'comment', dataset: { commentId: c.id } },
      h('div', { class: 'comment-meta' },
        h('strong', {}, presence.nameOf(c.author)),
        h('span', { class: 'muted' }, ago(c.at) + (c.edited_at && !c.deleted ? ' · edited' : ''))),
      body,
      own
        ? h('div', { class: 'comment-actions' },
          h('button', { type: 'button', class: 'link', onclick: () => startEdit(item, pin, c) }, 'Edit'),
          h('button', { type: 'button', class: 'link', onclick: () => store.editComment(pin.id, c.id, { deleted: true, text: '' }) }, 'Delete'))
        : null)
    return item
  }

  function startEdit (item, pin, c) {
    editing = c.id
    const input = h('textarea', { rows: 2, maxlength: MAX_TEXT, value: c.text, 'aria-label': 'Edit reply' })
    const done = (save) => {
      editing = null
      if (save && input.value.trim() && input.value !== c.text) {
        store.editComment(pin.id, c.id, { text: input.value.trim() })
      }
      renderThread()
    }
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); done(true) }
      if (e.key === 'Escape') { e.preventDefault(); done(false) }
    })
    replace(item, input, h('div', { class: 'comment-actions' },
      h('button', { type: 'button', class: 'primary', onclick: () => done(true) }, 'Save'),
      h('button', { type: 'button', class: 'ghost', onclick: () => done(false) }, 'Cancel')))
    input.focus()
  }

  // Tell a participant when someone mentions them (not for what was there when they came).
  const seen = new Set()
  let primed = false
  function noticeMentions () {
    for (const pin of store.pinList()) {
      for (const item of [{ id: pin.id, author: pin.author, text: pin.text }, ...pin.thread]) {
        if (seen.has(item.id)) continue
        seen.add(item.id)
        if (primed && item.author !== app.me.userId && mentions(item.text, presence.name)) {
          app.toast(`${presence.nameOf(item.author)} mentioned you on pin ${pin.number}`, 'mention')
        }
      }
    }
    primed = true
  }

  // Pins are numbered by when they were made, the same in every browser; a pin made
  // offline that arrives later can move others' numbers up. That is said, never silent.
  const numbers = new Map() // pin id -> the number this page showed last
  const renumbered = new Map() // pin id -> the number it had first here
  function noticeRenumbering () {
    const moved = []
    for (const pin of store.pinList()) {
      const before = numbers.get(pin.id)
      if (before !== undefined && before !== pin.number) {
        moved.push(`${before} → ${pin.number}`)
        if (!renumbered.has(pin.id)) renumbered.set(pin.id, before)
      }
      numbers.set(pin.id, pin.number)
    }
    if (moved.length) {
      const list = moved.length > 4 ? `${moved.slice(0, 4).join(', ')}, …` : moved.join(', ')
      app.toast(`Pins made earlier (offline) arrived, so pins were renumbered: ${list}.`, 'renumbered')
    }
    return moved.length > 0
  }

  // A decision is written into the layer, not the pin: the thread follows the layers too.
  store.on('layers', () => { if (app.state.selectedPin) renderThread() })
  store.on('pins', (ids) => {
    const shifted = noticeRenumbering()
    renderList()
    if (app.state.selectedPin && (shifted || ids.has(app.state.selectedPin))) renderThread()
    if (app.conn.everSynced) noticeMentions()
  })
  app.conn.on('state', (s) => { if (s === 'synced' && !primed) noticeMentions() })
  app.on('change:selectedPin', () => { editing = null; renderThread(); renderList() })
  app.on('change:revision', renderList)
  presence.on('names', () => { renderThread(); renderList() })
  renderList()
  renderThread()
  return { focusReply: () => replyBox.focus() }
}
