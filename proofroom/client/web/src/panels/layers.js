// The Versions panel: fix jobs in flight (progress, cancel), the layers with visibility
// toggles and state badges, and for the selected layer its provenance, the compare modes
// and the approvers' decisions.
import { h, replace, ago } from '../dom.js'
import { perFrame } from '../events.js'
import { isMissingEndpoint } from '../api.js'
import { LAYER_STATE_LABEL, DECISION_LABEL } from '../contract.js'
import { differenceOf } from '../compare.js'

const JOB_LABEL = { queued: 'Queued', running: 'Running', done: 'Done', failed: 'Failed', cancelled: 'Cancelled' }
const COMPARE_MODES = [['slider', 'Slider'], ['side', 'Side by side'], ['toggle', 'Toggle'], ['diff', 'Difference']]

export function mountLayersPanel (root, app) {
  const { store, presence, api } = app
  const jobsEl = h('ul', { class: 'jobs', 'aria-label': 'Fixes in progress' })
  const detail = h('div', { class: 'layer-detail', hidden: true })
  const list = h('ul', { class: 'layer-list', 'aria-label': 'Versions' })
  const empty = h('p', { class: 'muted empty' }, 'No versions yet. Editors make them from pins with “Fix”.')
  root.append(
    h('h2', {}, 'In progress'), jobsEl,
    detail,
    h('h2', {}, 'Versions'), empty, list)
  let decisionsAvailable = app.caps.decide

  const renderJobs = perFrame(() => {
    const jobs = store.jobList()
    const recent = jobs.filter((j) => j.status === 'queued' || j.status === 'running' ||
      (j.status !== 'done' && j.finished_at && Date.now() / 1000 - j.finished_at < 600))
    replace(jobsEl, recent.length === 0
      ? h('li', { class: 'muted' }, 'Nothing running.')
      : recent.map((job) => jobItem(app, job)))
  })

  const renderList = perFrame(() => {
    const layers = store.layerList().slice().reverse()
    empty.hidden = layers.length > 0
    const pins = new Map(store.pinList().map((p) => [p.id, p]))
    replace(list, layers.map((layer) => {
      const pin = pins.get(layer.pin_id)
      const visible = app.isLayerVisible(layer)
      return h('li', { class: layer.id === app.state.selectedLayer ? 'selected' : null },
        h('input', {
          type: 'checkbox',
          checked: visible,
          'aria-label': `Show version ${layer.index + 1}`,
          title: 'Show on the canvas',
          onchange: (e) => app.setLayerVisible(layer.id, e.target.checked)
        }),
        h('button', {
          type: 'button',
          class: 'layer-row',
          dataset: { layerId: layer.id },
          onclick: () => {
            app.selectLayer(layer.id)
            app.view.reveal(layer.box)
          }
        },
        h('img', { class: 'thumb', src: api.blobUrl(layer.patch), alt: '', loading: 'lazy', decoding: 'async' }),
        h('span', { class: 'layer-name' }, `Version ${layer.index + 1}`,
          h('span', { class: 'muted' }, pin ? ` · pin ${pin.number}` : '')),
        h('span', { class: `badge state-${layer.state}`, dataset: { state: layer.state } }, LAYER_STATE_LABEL[layer.state] || layer.state)))
    }))
  })

  const renderDetail = perFrame(() => {
    const layer = app.state.selectedLayer && store.layer(app.state.selectedLayer)
    detail.hidden = !layer
    if (!layer) return
    const p = layer.params
    const pin = store.pin(layer.pin_id)
    const compare = app.state.compare
    replace(detail,
      h('div', { class: 'panel-head' },
        h('h2', {}, `Version ${layer.index + 1}`),
        h('span', { class: `badge state-${layer.state}`, dataset: { state: layer.state } }, LAYER_STATE_LABEL[layer.state] || layer.state),
        h('button', { type: 'button', class: 'ghost', 'aria-label': 'Close version', onclick: () => app.selectLayer(null) }, '×')),
      h('p', { class: 'muted' },
        `${presence.nameOf(layer.author)} · ${ago(layer.created_at)}`,
        pin ? ` · pin ${pin.number}` : '',
        p.variant !== undefined ? ` · variant ${Number(p.variant) + 1}` : ''),
      p.prompt ? h('p', { class: 'prompt' }, p.prompt) : null,
      h('dl', { class: 'params' },
        ...[['Engine', p.engine], ['Model', p.model], ['Seed', p.seed], ['Steps', p.steps], ['Strength', p.strength]]
          .filter(([, v]) => v !== undefined && v !== null && v !== '')
          .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))])),
      h('div', { class: 'segmented', role: 'group', 'aria-label': 'Compare with its parent' },
        h('button', { type: 'button', 'aria-pressed': String(!compare), onclick: () => app.set('compare', null) }, 'Off'),
        COMPARE_MODES.map(([mode, label]) => h('button', {
          type: 'button',
          dataset: { compare: mode },
          'aria-pressed': String(compare?.mode === mode),
          onclick: () => startCompare(app, mode)
        }, label))),
      decisionsList(layer),
      decisionsAvailable ? decisionForm(layer) : null)
  })

  function decisionsList (layer) {
    const entries = Object.entries(layer.decisions)
    if (entries.length === 0) return h('p', { class: 'muted' }, 'No decision yet.')
    return h('ul', { class: 'decisions' }, entries.map(([user, d]) => h('li', {},
      h('strong', {}, presence.nameOf(user)), ' ',
      h('span', { class: `badge decision-${d?.decision}` }, DECISION_LABEL[d?.decision] || String(d?.decision)),
      d?.note ? h('p', { class: 'note' }, d.note) : null,
      h('span', { class: 'muted' }, ago(d?.at)))))
  }

  function decisionForm (layer) {
    const note = h('textarea', { rows: 2, placeholder: 'Note (needed to request changes)', 'aria-label': 'Decision note', maxlength: 2000 })
    const decide = async (decision, button) => {
      if (decision === 'request_changes' && !note.value.trim()) {
        note.focus()
        app.toast('Say what should change in the note.')
        return
      }
      button.disabled = true
      try {
        await api.post(`/api/sessions/${app.session.id}/layers/${encodeURIComponent(layer.id)}/decision`,
          { decision, note: note.value.trim() })
        note.value = ''
      } catch (err) {
        if (isMissingEndpoint(err)) {
          decisionsAvailable = false
          app.toast('Decisions are not available on this server yet.')
          renderDetail()
        } else app.toast(err.message, 'error')
      } finally {
        button.disabled = false
      }
    }
    const btn = (decision, label, cls) => {
      const b = h('button', { type: 'button', class: cls, dataset: { decision }, onclick: () => decide(decision, b) }, label)
      return b
    }
    return h('div', { class: 'decide' },
      note,
      h('div', { class: 'actions' },
        btn('approve', 'Approve', 'approve'),
        btn('request_changes', 'Request changes', 'changes'),
        btn('reject', 'Reject', 'reject')))
  }

  store.on('jobs', () => { renderJobs(); app.redraw() })
  store.on('layers', () => { renderList(); renderDetail(); app.redraw() })
  store.on('pins', () => renderList())
  presence.on('names', () => renderDetail())
  app.on('change:selectedLayer', () => { renderList(); renderDetail() })
  app.on('change:compare', () => renderDetail())
  app.on('layers-visible', () => renderList())
  setInterval(renderJobs, 30000) // let finished jobs age out of the list
  renderJobs()
  renderList()
  renderDetail()
}

/** One job: pin, status, queue position or progress, error, and Cancel for editors. */
export function jobItem (app, job) {
  const pin = app.store.pin(job.pin_id)
  const total = Number(job.total) || 0
  const step = Number(job.step) || 0
  const active = job.status === 'queued' || job.status === 'running'
  const cancel = h('button', {
    type: 'button',
    class: 'link',
    onclick: async () => {
      cancel.disabled = true
      try {
        await app.api.post(`/api/jobs/${encodeURIComponent(job.id)}/cancel`)
      } catch (err) {
        app.toast(err.message, 'error')
        cancel.disabled = false
      }
    }
  }, 'Cancel')
  return h('li', { class: `job ${job.status}`, dataset: { jobId: job.id, status: job.status } },
    h('div', { class: 'job-line' },
      h('span', {}, pin ? `Pin ${pin.number}` : 'Fix'),
      h('span', { class: `badge job-${job.status}` }, JOB_LABEL[job.status] || job.status),
      job.status === 'queued' && job.position ? h('span', { class: 'muted' }, `#${job.position} in queue`) : null,
      job.status === 'running' && total ? h('span', { class: 'muted' }, `${step}/${total}`) : null,
      active && app.caps.edit ? cancel : null),
    active ? h('progress', { max: total || 1, value: job.status === 'running' ? step : 0, 'aria-label': 'Progress' }) : null,
    job.error ? h('p', { class: 'error' }, job.error) : null)
}

/** Start a compare mode; the difference view is computed from the images first. */
export async function startCompare (app, mode) {
  const layer = app.store.layer(app.state.selectedLayer)
  if (!layer) {
    app.toast('Select a version to compare.')
    return
  }
  const current = app.state.compare
  if (current?.mode === mode && mode === 'toggle') {
    app.set('compare', { ...current, showAfter: !current.showAfter })
    return
  }
  const compare = { mode, showAfter: true, slider: 0.5, diff: null, stats: null }
  app.set('compare', compare)
  const [x, y, w, h] = layer.box
  const { view } = app
  if (mode === 'side') {
    // Each half shows the same image point: centre the version and fit it in a half.
    view.centerOn(x + w / 2, y + h / 2, Math.min(view.scale * 2, (view.width / 2 - 40) / w, (view.height - 120) / h))
  } else view.reveal(layer.box)
  if (mode === 'diff') {
    try {
      const result = await differenceOf(layer, app.store.parentChain(layer), app.images, app.session.base)
      if (app.state.compare === compare) {
        app.set('compare', { ...compare, diff: result.canvas, stats: result })
      }
    } catch (err) {
      app.toast('The difference could not be computed: an image did not load.', 'error')
    }
  }
}
