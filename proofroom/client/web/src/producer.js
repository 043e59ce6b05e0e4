// The producer's dashboard at / (admin token): every session's versions by state, open
// pins, rounds, time to approval and time in review, sortable and filterable, with a
// chart of approvals over time, a form to start a new review, and each session's replay.
// It is live: review events arrive over /api/events (opened with a one-time ticket, never
// the token in a URL) and the rows they touch update in place.
import { Api, ApiError, isMissingEndpoint } from './api.js'
import { approvalsChart } from './chart.js'
import { h, replace, byId, ago, duration } from './dom.js'
import { openReplay } from './replay.js'

/** Where this tab keeps the admin token once it has left the address bar. */
export const ADMIN_KEY = 'proofroom:admin'

const COLUMNS = [
  { key: 'title', label: 'Session', type: 'text' },
  { key: 'pending', label: 'Pending', type: 'num' },
  { key: 'approved', label: 'Approved', type: 'num' },
  { key: 'changes_requested', label: 'Changes req.', type: 'num' },
  { key: 'rejected', label: 'Rejected', type: 'num' },
  { key: 'open_pins', label: 'Open pins', type: 'num' },
  { key: 'rounds_per_pin', label: 'Rounds / pin', type: 'num' },
  { key: 'time_to_approval_s', label: 'Time to approval', type: 'dur' },
  { key: 'time_in_review_s', label: 'Time in review', type: 'dur' },
  { key: 'last_activity', label: 'Last activity', type: 'ago' }
]

const FILTERS = {
  all: () => true,
  review: (r) => r.pending > 0,
  changes: (r) => r.changes_requested > 0,
  approved: (r) => r.approved > 0 && !r.pending && !r.changes_requested,
  empty: (r) => !r.pending && !r.approved && !r.changes_requested && !r.rejected
}

/** The review events that change a row (README "Events and webhooks"). */
const LIVE_TYPES = ['session.created', 'pin.created', 'pin.resolved', 'pin.reopened',
  'layer.created', 'layer.decision', 'job.done', 'job.failed', 'job.cancelled']
/** Above this many touched sessions at once, one full reload is cheaper than rows. */
const MANY = 20

function adminToken () {
  const fromUrl = new URLSearchParams(location.search).get('token')
  if (fromUrl) {
    try { sessionStorage.setItem(ADMIN_KEY, fromUrl) } catch (_err) {}
    // The token leaves the address bar (and the history): nothing in the URL to leak.
    history.replaceState(history.state, '', location.pathname + location.hash)
    return fromUrl
  }
  try { return sessionStorage.getItem(ADMIN_KEY) } catch (_err) { return null }
}

async function boot () {
  const token = adminToken()
  const main = byId('dashboard')
  if (!token) {
    return replace(main, h('p', {}, 'Open this page with the link that '),
      h('code', {}, 'proofroom serve'), ' printed: it carries the workspace admin token.')
  }
  const api = new Api(token)
  let me
  try {
    me = await api.get('/api/whoami')
  } catch (err) {
    return replace(main, h('p', { class: 'error' }, err instanceof ApiError && err.status === 401
      ? 'This token is not valid.'
      : err.message))
  }
  if (!me.admin) {
    return replace(main, h('p', {}, 'This dashboard is for the workspace admin. '),
      me.session ? h('a', { href: `/s/${encodeURIComponent(me.session)}?token=${encodeURIComponent(token)}` }, 'Open your review session') : null)
  }
  const state = { rows: new Map(), sort: 'last_activity', desc: true, text: '', filter: 'all', detailed: true, totals: {} }
  const filterText = h('input', { type: 'search', placeholder: 'Filter by title', 'aria-label': 'Filter by title', oninput: (e) => { state.text = e.target.value.toLowerCase(); render() } })
  const filterState = h('select', { 'aria-label': 'Filter by state', onchange: (e) => { state.filter = e.target.value; render() } },
    h('option', { value: 'all' }, 'All sessions'),
    h('option', { value: 'review' }, 'Versions waiting for review'),
    h('option', { value: 'changes' }, 'Changes requested'),
    h('option', { value: 'approved' }, 'All approved'),
    h('option', { value: 'empty' }, 'No versions yet'))
  const liveBadge = h('span', { class: 'live-badge', role: 'status' }, 'Connecting…')
  const notice = h('p', { class: 'notice', hidden: true })
  const totals = h('div', { class: 'totals' })
  const chart = h('figure', { class: 'chart-box' })
  const thead = h('thead')
  const tbody = h('tbody')
  const empty = h('tr', { class: 'empty' }, h('td', { colspan: COLUMNS.length + 1, class: 'muted' }, 'No session matches.'))
  const table = h('table', { class: 'sessions' }, thead, tbody)
  const replayBox = h('section', { class: 'replay-box', hidden: true })
  /** Session id -> its <tr>, kept across renders (a row is updated, never rebuilt). */
  const trs = new Map()
  replace(main,
    h('section', { class: 'cards' }, totals, chart),
    h('section', {},
      h('div', { class: 'toolbar-row' }, h('h2', {}, 'Sessions'), liveBadge, filterText, filterState,
        h('button', { type: 'button', onclick: load }, 'Refresh')),
      notice,
      h('div', { class: 'table-wrap' }, table)),
    replayBox,
    newSessionForm(api, () => document.body.dataset.live === 'on' || load()))

  async function load () {
    try {
      const data = await api.get('/api/producer?limit=10000')
      state.detailed = true
      state.rows = new Map(data.sessions.map((s) => [s.id, rowOf(s)]))
      state.totals = data.totals || {}
    } catch (err) {
      if (!isMissingEndpoint(err)) {
        notice.textContent = err.message
        notice.hidden = false
        return
      }
      // An older server: list the sessions without review figures.
      const data = await api.get('/api/sessions')
      state.detailed = false
      state.rows = new Map(data.sessions.map((s) => [s.id, rowOf({ ...s, last_activity: s.created_at })]))
      state.totals = {}
      notice.textContent = 'This server does not report review figures yet: only the sessions are listed.'
      notice.hidden = false
    }
    render()
  }

  /** Refetch only the sessions that review events touched (and the totals). */
  async function refreshRows (ids) {
    if (!state.detailed || ids.length > MANY || ids.some((id) => !state.rows.has(id))) return load()
    try {
      const [rows, all] = await Promise.all([
        Promise.all(ids.map((id) => api.get(`/api/producer/sessions/${encodeURIComponent(id)}`))),
        api.get('/api/producer?limit=1')
      ])
      for (const s of rows) state.rows.set(s.id, rowOf(s))
      state.totals = all.totals || {}
    } catch (err) {
      return load()
    }
    render()
  }

  function render () {
    const col = COLUMNS.find((c) => c.key === state.sort)
    const rows = [...state.rows.values()]
      .filter((r) => r.title.toLowerCase().includes(state.text) && FILTERS[state.filter](r))
      .sort((a, b) => {
        const x = a[state.sort]
        const y = b[state.sort]
        const nullish = (v) => v === null || v === undefined
        if (nullish(x) || nullish(y)) return nullish(x) - nullish(y) // blanks last
        const c = col.type === 'text' ? String(x).localeCompare(String(y)) : x - y
        return state.desc ? -c : c
      })
    renderHead()
    const shown = new Set(rows.map((r) => r.id))
    for (const [id, tr] of trs) {
      if (!shown.has(id)) tr.remove()
      if (!state.rows.has(id)) trs.delete(id)
    }
    if (rows.length === 0) tbody.append(empty)
    else empty.remove()
    // In order, moving a row only where it is out of place.
    let at = tbody.firstElementChild
    for (const r of rows) {
      let tr = trs.get(r.id)
      if (!tr) {
        tr = h('tr', { dataset: { sessionId: r.id } }, COLUMNS.map(() => h('td')),
          h('td', {}, h('button', { type: 'button', class: 'small', onclick: () => showReplay(r.id) }, 'Replay')))
        trs.set(r.id, tr)
      }
      fillRow(tr, r)
      if (tr !== at) tbody.insertBefore(tr, at)
      else at = at.nextElementSibling
    }
    const all = [...state.rows.values()]
    const sum = (k) => all.reduce((n, r) => n + (Number(r[k]) || 0), 0)
    replace(totals,
      card('Sessions', all.length),
      card('Waiting for review', state.detailed ? sum('pending') : '—'),
      card('Approved versions', state.detailed ? sum('approved') : '—'),
      card('Open pins', state.detailed ? sum('open_pins') : '—'),
      card('Median time to approval', duration(state.totals?.median_time_to_approval ?? median(all.map((r) => r.time_to_approval_s)))))
    replace(chart, approvalsChart(all.flatMap((r) => r.approvals)), h('figcaption', {}, 'Approvals over time'))
  }

  function renderHead () {
    if (!thead.firstElementChild) {
      thead.append(h('tr', {}, COLUMNS.map((c) => h('th', { scope: 'col' }, h('button', {
        type: 'button',
        dataset: { sort: c.key },
        onclick: () => {
          state.desc = state.sort === c.key ? !state.desc : c.type !== 'text'
          state.sort = c.key
          render()
        }
      }, c.label))), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'History'))))
    }
    const ths = thead.querySelectorAll('th')
    COLUMNS.forEach((c, i) => ths[i].setAttribute('aria-sort',
      c.key === state.sort ? (state.desc ? 'descending' : 'ascending') : 'none'))
  }

  async function showReplay (sessionId) {
    replayBox.hidden = false
    await openReplay(replayBox, api, sessionId, () => { replayBox.hidden = true; replace(replayBox) })
    replayBox.scrollIntoView({ block: 'start' })
  }

  await load()
  // Durations and "3 min ago" age, and a stream can miss what happened while it was away:
  // a slow reload besides the live updates (rows update in place either way).
  setInterval(load, 60000)
  live(api, {
    touched: refreshRows,
    reconnected: load,
    status: (on, text) => {
      document.body.dataset.live = on ? 'on' : 'off'
      liveBadge.textContent = text
      liveBadge.classList.toggle('off', !on)
    }
  })
}

/**
 * Follow /api/events: `touched(ids)` with the sessions a burst of events changed,
 * `reconnected()` after a gap (events may have been missed), `status(on, text)`.
 * EventSource cannot send a header, so each connection asks for a one-time ticket.
 */
function live (api, { touched, reconnected, status }) {
  let pending = new Set()
  let timer = null
  let source = null
  let failures = 0
  let connectedOnce = false

  const flush = () => {
    timer = null
    const ids = [...pending]
    pending = new Set()
    if (ids.length) touched(ids)
  }
  const onEvent = (message) => {
    let event
    try { event = JSON.parse(message.data) } catch (_err) { return }
    if (!event || typeof event.session !== 'string') return
    pending.add(event.session)
    // Events come in bursts (a decision, its pin, its job): one refetch per burst.
    if (timer === null) timer = setTimeout(flush, 40)
  }
  const retry = (why) => {
    if (source) source.close()
    source = null
    status(false, why)
    const delay = Math.min(10000, 500 * 2 ** failures++)
    setTimeout(connect, delay)
  }
  async function connect () {
    let ticket
    try {
      ticket = (await api.json('POST', '/api/events/ticket')).ticket
    } catch (_err) {
      return retry('Offline: retrying…')
    }
    source = new EventSource(`/api/events?ticket=${encodeURIComponent(ticket)}&types=${encodeURIComponent(LIVE_TYPES.join(','))}`)
    source.addEventListener('ready', () => {
      failures = 0
      status(true, 'Live')
      if (connectedOnce) reconnected()
      connectedOnce = true
    })
    for (const type of LIVE_TYPES) source.addEventListener(type, onEvent)
    source.addEventListener('dropped', () => retry('Catching up…'))
    source.addEventListener('closing', () => retry('The server is restarting…'))
    // A ticket opens one stream: the browser's own reconnect would be refused, so every
    // reconnect goes through a new ticket.
    source.onerror = () => retry('Reconnecting…')
  }
  connect()
}

function rowOf (s) {
  const v = s.versions || {}
  return {
    id: s.id,
    title: String(s.title || 'Untitled'),
    created_at: s.created_at,
    pending: v.pending ?? null,
    approved: v.approved ?? null,
    changes_requested: v.changes_requested ?? null,
    rejected: v.rejected ?? null,
    open_pins: s.open_pins ?? null,
    rounds_per_pin: s.rounds_per_pin ?? null,
    time_to_approval_s: s.median_time_to_approval ?? s.time_to_approval_s ?? null,
    time_in_review_s: s.time_in_review ?? s.time_in_review_s ?? null,
    // Approval times, as numbers or as {at} objects.
    approvals: (s.approvals || []).map((a) => Number(typeof a === 'object' && a ? a.at : a)).filter(Number.isFinite),
    last_activity: s.last_activity ?? s.created_at ?? null
  }
}

/** Put a row's values into its cells, touching only what changed. */
function fillRow (tr, row) {
  COLUMNS.forEach((col, i) => {
    const td = tr.children[i]
    const v = row[col.key]
    if (col.key === 'title') {
      // No token in the link: the room finds this tab's admin token (join.js).
      const href = `/s/${encodeURIComponent(row.id)}`
      const a = td.firstElementChild || td.appendChild(h('a', { href }))
      if (a.textContent !== v) a.textContent = v
      return
    }
    let text, cls
    if (v === null || v === undefined) [text, cls] = ['—', 'muted num']
    else if (col.type === 'dur') [text, cls] = [duration(v), 'num']
    else if (col.type === 'ago') [text, cls] = [ago(v), '']
    else [text, cls] = [col.key === 'rounds_per_pin' ? Number(v).toFixed(1) : String(v), 'num']
    if (td.textContent !== text) td.textContent = text
    if (td.className !== cls) td.className = cls
  })
}

function card (label, value) {
  return h('div', { class: 'card' }, h('span', { class: 'card-value' }, String(value)), h('span', { class: 'card-label' }, label))
}

function median (values) {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (!v.length) return null
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2
}

function newSessionForm (api, created) {
  const file = h('input', { type: 'file', accept: 'image/png,image/jpeg,image/webp', required: true, 'aria-label': 'Image' })
  const title = h('input', { type: 'text', maxlength: 200, placeholder: 'Title', 'aria-label': 'Title' })
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create session')
  const result = h('div', { class: 'links', 'aria-live': 'polite' })
  const form = h('form', {
    class: 'new-session',
    onsubmit: async (e) => {
      e.preventDefault()
      if (!file.files[0]) return
      const body = new FormData()
      body.append('image', file.files[0])
      body.append('title', title.value)
      submit.disabled = true
      try {
        const made = await api.json('POST', '/api/sessions', body)
        // Clear the inputs only: the links below are shown once, and must stay.
        file.value = ''
        title.value = ''
        replace(result, h('p', {}, `“${made.title}” is ready. Share one link per role (each is shown once):`),
          h('dl', {}, Object.entries(made.links).flatMap(([role, url]) => [
            h('dt', {}, role), h('dd', {}, h('input', { type: 'text', readonly: true, value: url, 'aria-label': `${role} link` }))])))
        created() // the live stream brings the new row; without it, reload
      } catch (err) {
        replace(result, h('p', { class: 'error' }, err.message))
      } finally {
        submit.disabled = false
      }
    }
  }, h('h2', {}, 'New review'), file, title, submit, result)
  return form
}

boot()
