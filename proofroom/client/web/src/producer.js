// The producer's dashboard at / (admin token): every session's versions by state, open
// pins, rounds, time to approval and time in review, sortable and filterable, with a
// chart of approvals over time, and a form to start a new review.
import { Api, ApiError, isMissingEndpoint } from './api.js'
import { approvalsChart } from './chart.js'
import { h, replace, byId, ago, duration } from './dom.js'

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

async function boot () {
  const token = new URLSearchParams(location.search).get('token')
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
  const state = { rows: [], sort: 'last_activity', desc: true, text: '', filter: 'all', detailed: true, approvals: [] }
  const filterText = h('input', { type: 'search', placeholder: 'Filter by title', 'aria-label': 'Filter by title', oninput: (e) => { state.text = e.target.value.toLowerCase(); render() } })
  const filterState = h('select', { 'aria-label': 'Filter by state', onchange: (e) => { state.filter = e.target.value; render() } },
    h('option', { value: 'all' }, 'All sessions'),
    h('option', { value: 'review' }, 'Versions waiting for review'),
    h('option', { value: 'changes' }, 'Changes requested'),
    h('option', { value: 'approved' }, 'All approved'),
    h('option', { value: 'empty' }, 'No versions yet'))
  const notice = h('p', { class: 'notice', hidden: true })
  const totals = h('div', { class: 'totals' })
  const chart = h('figure', { class: 'chart-box' })
  const thead = h('thead')
  const tbody = h('tbody')
  const table = h('table', { class: 'sessions' }, thead, tbody)
  replace(main,
    h('section', { class: 'cards' }, totals, chart),
    h('section', {},
      h('div', { class: 'toolbar-row' }, h('h2', {}, 'Sessions'), filterText, filterState,
        h('button', { type: 'button', onclick: load }, 'Refresh')),
      notice,
      h('div', { class: 'table-wrap' }, table)),
    newSessionForm(api, token, load))

  async function load () {
    try {
      const data = await api.get('/api/producer?limit=10000')
      state.detailed = true
      state.rows = data.sessions.map(rowOf)
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
      state.rows = data.sessions.map((s) => rowOf({ ...s, last_activity: s.created_at }))
      state.totals = {}
      notice.textContent = 'This server does not report review figures yet: only the sessions are listed.'
      notice.hidden = false
    }
    render()
  }

  function render () {
    const col = COLUMNS.find((c) => c.key === state.sort)
    const rows = state.rows
      .filter((r) => r.title.toLowerCase().includes(state.text) && FILTERS[state.filter](r))
      .sort((a, b) => {
        const x = a[state.sort]
        const y = b[state.sort]
        const nullish = (v) => v === null || v === undefined
        if (nullish(x) || nullish(y)) return nullish(x) - nullish(y) // blanks last
        const c = col.type === 'text' ? String(x).localeCompare(String(y)) : x - y
        return state.desc ? -c : c
      })
    replace(thead, h('tr', {}, COLUMNS.map((c) => h('th', {
      scope: 'col',
      'aria-sort': c.key === state.sort ? (state.desc ? 'descending' : 'ascending') : 'none'
    }, h('button', {
      type: 'button',
      dataset: { sort: c.key },
      onclick: () => {
        state.desc = state.sort === c.key ? !state.desc : c.type !== 'text'
        state.sort = c.key
        render()
      }
    }, c.label)))))
    replace(tbody, rows.length === 0
      ? h('tr', {}, h('td', { colspan: COLUMNS.length, class: 'muted' }, 'No session matches.'))
      : rows.map((r) => h('tr', { dataset: { sessionId: r.id } }, COLUMNS.map((c) => cell(c, r, token)))))
    const all = state.rows
    const sum = (k) => all.reduce((n, r) => n + (Number(r[k]) || 0), 0)
    replace(totals,
      card('Sessions', all.length),
      card('Waiting for review', state.detailed ? sum('pending') : '—'),
      card('Approved versions', state.detailed ? sum('approved') : '—'),
      card('Open pins', state.detailed ? sum('open_pins') : '—'),
      card('Median time to approval', duration(state.totals?.median_time_to_approval ?? state.totals?.time_to_approval_s ?? median(all.map((r) => r.time_to_approval_s)))))
    replace(chart, approvalsChart(all.flatMap((r) => r.approvals)), h('figcaption', {}, 'Approvals over time'))
  }

  await load()
  setInterval(load, 30000)
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

function cell (col, row, token) {
  const v = row[col.key]
  if (col.key === 'title') {
    return h('td', {}, h('a', { href: `/s/${encodeURIComponent(row.id)}?token=${encodeURIComponent(token)}` }, v))
  }
  if (v === null || v === undefined) return h('td', { class: 'muted num' }, '—')
  if (col.type === 'dur') return h('td', { class: 'num' }, duration(v))
  if (col.type === 'ago') return h('td', {}, ago(v))
  return h('td', { class: 'num' }, col.key === 'rounds_per_pin' ? Number(v).toFixed(1) : String(v))
}

function card (label, value) {
  return h('div', { class: 'card' }, h('span', { class: 'card-value' }, String(value)), h('span', { class: 'card-label' }, label))
}

function median (values) {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (!v.length) return null
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2
}

function newSessionForm (api, token, reload) {
  const file = h('input', { type: 'file', accept: 'image/png,image/jpeg,image/webp', required: true, 'aria-label': 'Image' })
  const title = h('input', { type: 'text', maxlength: 200, placeholder: 'Title', 'aria-label': 'Title' })
  const result = h('div', { class: 'links' })
  const form = h('form', {
    class: 'new-session',
    onsubmit: async (e) => {
      e.preventDefault()
      if (!file.files[0]) return
      const body = new FormData()
      body.append('image', file.files[0])
      body.append('title', title.value)
      try {
        const made = await api.json('POST', '/api/sessions', body)
        replace(result, h('p', {}, `“${made.title}” is ready. Share one link per role (each is shown once):`),
          h('dl', {}, Object.entries(made.links).flatMap(([role, url]) => [
            h('dt', {}, role), h('dd', {}, h('input', { type: 'text', readonly: true, value: url, 'aria-label': `${role} link` }))])))
        form.reset()
        reload()
      } catch (err) {
        replace(result, h('p', { class: 'error' }, err.message))
      }
    }
  }, h('h2', {}, 'New review'), file, title, h('button', { type: 'submit', class: 'primary' }, 'Create session'), result)
  return form
}

boot()
