// A session's stack of revisions (DESIGN.md section 3), the way Frame.io stacks versions:
// v1 the upload, then upscales and clips, each with its kind, size, state and decisions.
// The switcher over the stage picks the one shown (its picture or clip, its pins and
// layers); the Revisions panel has the details, the approvers' decision on the revision as a
// whole, and for editors and owners the Upscale… and Animate… requests and their jobs.
// Lists are updated in place: progress and decisions arrive while a person is clicking.
import { ORIGINAL_REVISION, DECISION_LABEL } from './contract.js'
import { ago, h, keyed, replace, setAttr, setText } from './dom.js'
import { stateLabel } from './versions.js'
import { updateJobs } from './panels/jobs.js'

const KIND_LABEL = { original: 'Original', upscale: 'Upscale', clip: 'Clip' }
const FACTORS = [2, 4, 3, 1.5]
const MOTIONS = [['push-in', 'Push in'], ['pan-left', 'Pan left'], ['pan-right', 'Pan right'], ['parallax', 'Parallax (layers as depth)']]
// What the CPU engines are, said plainly (the issue: "honestly named in the UI").
const ENGINE_NOTE = {
  resample: 'Lanczos resampling with a mild unsharp mask (CPU): no new detail is invented',
  camera: 'A camera move over the still (CPU): nothing in the picture moves by itself'
}
const REVISION_JOBS = new Set(['upscale', 'animate'])

export const revisionName = (rev) => `v${rev.index + 1}`

/** The stack as the room shows it: the document's, or the original alone before any other. */
export function revisionStack (app) {
  const list = app.store.revisionList()
  return list.length ? list : [app.revision()]
}

function sizeOf (rev) {
  const size = rev.width && rev.height ? `${rev.width}×${rev.height}` : ''
  if (rev.media !== 'video') return size
  const seconds = rev.frames && rev.fps ? `${(rev.frames / rev.fps).toFixed(1)} s` : ''
  return [size, seconds, rev.fps ? `${rev.fps} fps` : ''].filter(Boolean).join(' · ')
}

/** The switcher over the stage. */
export function mountRevisionStrip (host, app) {
  const render = () => {
    const stack = revisionStack(app)
    host.hidden = stack.length < 2
    keyed(host, stack, (r) => r.id,
      (r) => h('button', {
        type: 'button',
        class: 'rev-chip',
        dataset: { revisionId: r.id },
        onclick: () => app.selectRevision(r.id),
        onpointerdown: (e) => e.stopPropagation()
      }, h('strong', {}), h('span', { class: 'rev-kind' }), h('span', { class: 'muted rev-size' }), h('span', { class: 'badge' })),
      (el, r) => {
        const [name, kind, size, badge] = el.children
        setText(name, revisionName(r))
        setText(kind, KIND_LABEL[r.kind] || r.kind)
        setText(size, sizeOf(r))
        setAttr(badge, 'class', `badge state-${r.state}`)
        badge.dataset.state = r.state
        badge.hidden = r.kind === 'original'
        setText(badge, stateLabel(r.state))
        setAttr(el, 'aria-pressed', String(r.id === app.state.revision))
        setAttr(el, 'title', `${revisionName(r)}: ${KIND_LABEL[r.kind] || r.kind} ${sizeOf(r)}`)
      })
  }
  app.store.on('revisions', render)
  app.on('change:revision', render)
  render()
}

/** The Revisions panel. */
export function mountRevisionsPanel (root, app) {
  const { store, presence, api } = app
  const sessionPath = `/api/sessions/${encodeURIComponent(app.session.id)}`
  const list = h('ul', { class: 'revision-list' })
  const detail = h('div', { class: 'revision-detail' })
  const jobs = h('ul', { class: 'jobs revision-jobs' })
  const asked = new Set() // jobs this page asked for: their revision is shown when it arrives
  root.append(h('h3', {}, 'Revisions'), list, detail)
  let forms = null
  if (app.caps.edit) {
    forms = requestForms()
    root.append(forms.el)
  }
  // Everyone sees them coming (Cancel is for editors and owners, as for fixes).
  root.append(h('h3', {}, 'Upscales and clips in progress'), jobs)

  function renderList () {
    keyed(list, revisionStack(app), (r) => r.id,
      (r) => h('li', {}, h('button', { type: 'button', class: 'revision-row', dataset: { revisionId: r.id }, onclick: () => app.selectRevision(r.id) },
        h('strong', {}), h('span', {}), h('span', { class: 'muted' }), h('span', { class: 'badge' }))),
      (li, r) => {
        const row = li.firstChild
        const [name, kind, size, badge] = row.children
        setText(name, revisionName(r))
        setText(kind, KIND_LABEL[r.kind] || r.kind)
        setText(size, sizeOf(r))
        setAttr(badge, 'class', `badge state-${r.state}`)
        badge.dataset.state = r.state
        setText(badge, r.kind === 'original' ? 'Upload' : stateLabel(r.state))
        setAttr(row, 'aria-pressed', String(r.id === app.state.revision))
      })
  }

  let decisionForm = null
  function renderDetail () {
    const rev = app.revision()
    const shown = JSON.stringify([rev, presence.nameOf(rev.author)])
    if (detail.dataset.shown === shown) return
    const sameRevision = detail.dataset.revision === rev.id
    detail.dataset.shown = shown
    detail.dataset.revision = rev.id
    const source = rev.source && rev.source.revision
    const from = source ? store.revision(source) : null
    const carried = rev.carry ? Object.keys(rev.carry.pins || {}).length : 0
    const left = rev.carry ? (rev.carry.left || []).length : 0
    const p = rev.params || {}
    const rows = [
      ['Kind', KIND_LABEL[rev.kind] || rev.kind],
      ['Size', sizeOf(rev)],
      rev.media === 'video' ? ['Frames', String(rev.frames ?? '')] : null,
      source ? ['Made from', `${from ? revisionName(from) : 'v1'}${rev.source.layers?.length ? ` with ${rev.source.layers.length} approved layer${rev.source.layers.length > 1 ? 's' : ''}` : ''}`] : null,
      p.engine ? ['Engine', `${p.engine}${p.model ? ` (${p.model})` : ''}`] : null,
      p.factor ? ['Factor', `${p.factor}×`] : null,
      p.motion ? ['Motion', p.motion] : null,
      rev.author ? ['By', `${presence.nameOf(rev.author)} · ${ago(rev.created_at)}`] : null,
      rev.carry ? ['Open pins', rev.carry.mode === 'none' ? `${left} left behind on the source` : `${carried} carried over (scaled)`] : null
    ].filter(Boolean)
    const keep = sameRevision && decisionForm ? decisionForm : null
    decisionForm = rev.kind !== 'original' && app.caps.decide ? keep || decisionUi(rev.id) : null
    replace(detail,
      h('h4', {}, `${revisionName(rev)} · ${KIND_LABEL[rev.kind] || rev.kind}`,
        rev.kind === 'original' ? null : h('span', { class: `badge state-${rev.state}`, dataset: { state: rev.state } }, stateLabel(rev.state))),
      h('dl', { class: 'revision-facts' }, rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      rev.kind === 'original' ? h('p', { class: 'muted' }, 'The upload: its fixes are decided on in Versions.') : decisionsList(rev),
      decisionForm ? decisionForm.el : null,
      exportLinks(rev))
  }

  /** Owners export an approved upscale (PNG) or clip (MP4), with its provenance JSON. */
  function exportLinks (rev) {
    if (!app.caps.administer || rev.kind === 'original' || rev.state !== 'approved') return null
    const base = `${sessionPath}/revisions/${encodeURIComponent(rev.id)}`
    const token = `?token=${encodeURIComponent(api.token)}`
    return h('div', { class: 'actions revision-export' },
      h('a', { class: 'button', href: `${base}/export${token}`, download: '' }, rev.media === 'video' ? 'Export MP4' : 'Export PNG'),
      h('a', { class: 'button ghost', href: `${base}/export.json${token}`, download: '' }, 'Provenance (JSON)'))
  }

  function decisionsList (rev) {
    const entries = Object.entries(rev.decisions || {})
    if (!entries.length) return h('p', { class: 'muted' }, 'No decision yet.')
    return h('ul', { class: 'decisions' }, entries.map(([user, d]) => h('li', {},
      h('strong', {}, presence.nameOf(user)), ' ',
      h('span', { class: `badge decision-${d?.decision}` }, DECISION_LABEL[d?.decision] || String(d?.decision)),
      d?.note ? h('p', { class: 'note' }, d.note) : null,
      h('span', { class: 'muted' }, ago(d?.at)))))
  }

  // The same rules as a version's decision: a note is needed to request changes.
  function decisionUi (revisionId) {
    const note = h('textarea', { rows: 2, placeholder: 'Note (needed to request changes)', 'aria-label': 'Revision decision note', maxlength: 2000 })
    const decide = async (decision, button) => {
      if (decision === 'request_changes' && !note.value.trim()) {
        note.focus()
        app.toast('Say what should change in the note.')
        return
      }
      button.disabled = true
      try {
        await api.post(`${sessionPath}/revisions/${encodeURIComponent(revisionId)}/decision`, { decision, note: note.value.trim() })
        note.value = ''
      } catch (err) {
        app.toast(err.message, 'error')
      } finally {
        button.disabled = false
      }
    }
    const btn = (decision, label, cls) => {
      const b = h('button', { type: 'button', class: cls, dataset: { decision }, onclick: () => decide(decision, b) }, label)
      return b
    }
    const el = h('div', { class: 'decide revision-decide' }, note,
      h('div', { class: 'actions' },
        btn('approve', 'Approve revision', 'approve'),
        btn('request_changes', 'Request changes', 'changes'),
        btn('reject', 'Reject', 'reject')))
    return { el, note }
  }

  // -- requests (editors and owners) ----------------------------------------------------------

  function requestForms () {
    const engines = { upscale: h('select', { 'aria-label': 'Upscale engine' }), animate: h('select', { 'aria-label': 'Animate engine' }) }
    const notes = { upscale: h('p', { class: 'muted engine-note' }), animate: h('p', { class: 'muted engine-note' }) }
    const field = (label, input) => h('label', { class: 'field' }, label, input)
    const carry = () => h('label', { class: 'check' }, h('input', { type: 'checkbox', checked: true, name: 'carry' }), 'Carry open pins over (scaled)')
    const factor = h('select', { name: 'factor' }, FACTORS.map((f) => h('option', { value: String(f) }, `${f}×`)))
    const up = h('form', { class: 'revision-form', dataset: { kind: 'upscale' }, hidden: true },
      h('h4', {}, 'Upscale'), h('p', { class: 'muted source-line' }),
      field('Factor', factor), field('Engine', engines.upscale), notes.upscale, carry(),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Upscale'), h('button', { type: 'button', class: 'ghost', onclick: () => { up.hidden = true } }, 'Cancel')))
    const seconds = h('input', { type: 'number', name: 'seconds', min: '0.5', step: '0.5', value: '4' })
    const fps = h('input', { type: 'number', name: 'fps', min: '1', max: '60', step: '1', value: '24' })
    const motion = h('select', { name: 'motion' }, MOTIONS.map(([v, l]) => h('option', { value: v }, l)))
    const anim = h('form', { class: 'revision-form', dataset: { kind: 'animate' }, hidden: true },
      h('h4', {}, 'Animate'), h('p', { class: 'muted source-line' }),
      field('Seconds', seconds), field('Frames per second', fps), field('Motion', motion), field('Engine', engines.animate), notes.animate, carry(),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Make clip'), h('button', { type: 'button', class: 'ghost', onclick: () => { anim.hidden = true } }, 'Cancel')))
    const openUp = h('button', { type: 'button', class: 'open-upscale', onclick: () => { up.hidden = false; anim.hidden = true } }, 'Upscale…')
    const openAnim = h('button', { type: 'button', class: 'open-animate', onclick: () => { anim.hidden = false; up.hidden = true } }, 'Animate…')
    const hint = h('p', { class: 'muted', hidden: true }, 'Select a still (an image revision) to upscale or animate it.')
    for (const kind of ['upscale', 'animate']) engines[kind].addEventListener('change', () => setText(notes[kind], ENGINE_NOTE[engines[kind].value] || ''))

    const sourceBody = () => {
      const rev = app.revision()
      return rev.id === ORIGINAL_REVISION ? {} : { revision: rev.id }
    }
    const send = async (form, path, body) => {
      const submit = form.querySelector('[type=submit]')
      submit.disabled = true
      try {
        const carryBox = form.querySelector('input[name=carry]')
        const queued = await api.post(`${sessionPath}/${path}`, { ...body, ...sourceBody(), carry: carryBox.checked ? 'open' : 'none' })
        if (queued && queued.job) asked.add(queued.job)
        form.hidden = true
      } catch (err) {
        app.toast(err.message, 'error')
      } finally {
        submit.disabled = false
      }
    }
    up.addEventListener('submit', (e) => {
      e.preventDefault()
      send(up, 'upscale', { factor: Number(factor.value), engine: engines.upscale.value || undefined })
    })
    anim.addEventListener('submit', (e) => {
      e.preventDefault()
      send(anim, 'animate', { seconds: Number(seconds.value), fps: Number(fps.value), motion: motion.value, engine: engines.animate.value || undefined })
    })

    api.get('/api/engines').then(({ engines: all, default: defaults }) => {
      for (const kind of ['upscale', 'animate']) {
        const usable = (all || []).filter((e) => e.kind === kind)
        replace(engines[kind], usable.map((e) => h('option', {
          value: e.name,
          disabled: Boolean(e.unavailable),
          title: e.unavailable || ''
        }, e.unavailable ? `${e.name} (not available here)` : e.name)))
        engines[kind].value = (defaults && defaults[kind]) || (usable.find((e) => !e.unavailable) || {}).name || ''
        setText(notes[kind], ENGINE_NOTE[engines[kind].value] || '')
      }
    }, () => {}) // the server's default engine is used then

    const el = h('div', { class: 'revision-requests' }, h('div', { class: 'actions' }, openUp, openAnim), hint, up, anim)
    return {
      el,
      update () {
        const rev = app.revision()
        const still = rev.media !== 'video'
        openUp.disabled = !still
        openAnim.disabled = !still
        hint.hidden = still
        if (!still) { up.hidden = true; anim.hidden = true }
        const what = rev.id === ORIGINAL_REVISION ? 'the approved state of v1 (the upload with its approved fixes)' : `${revisionName(rev)}`
        for (const line of el.querySelectorAll('.source-line')) setText(line, `From ${what}.`)
      }
    }
  }

  function renderJobs () {
    const mine = store.jobList().filter((j) => REVISION_JOBS.has(j.kind))
    const active = mine.filter((j) => j.status === 'queued' || j.status === 'running' || j.status === 'failed')
    updateJobs(jobs, active, app, 'Nothing in progress.')
    for (const j of mine) {
      if (j.status === 'done' && j.revision && asked.has(j.id) && store.revision(j.revision)) {
        asked.delete(j.id)
        app.selectRevision(j.revision)
        app.toast(`${revisionName(store.revision(j.revision))} is ready.`)
      }
    }
  }

  const render = () => {
    renderList()
    renderDetail()
    if (forms) forms.update()
  }
  store.on('revisions', () => { render(); renderJobs() })
  store.on('jobs', renderJobs)
  app.on('change:revision', render)
  presence.on('names', () => { detail.dataset.shown = ''; renderDetail() })
  render()
  renderJobs()
}
