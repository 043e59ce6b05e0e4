// The list of fix jobs in flight: progress, queue position and Cancel, updated in place
// (progress streams a few times a second; a rebuilt row would take the Cancel button being
// pressed away from under a person).

import { h, keyed, setText, setAttr } from '../dom.js'

// What a job without a pin is (an upscale or a clip makes a revision, issue 13).
const KIND_LABEL = { upscale: 'Upscale', animate: 'Clip' }
const JOB_LABEL = { queued: 'Queued', running: 'Running', done: 'Done', failed: 'Failed', cancelled: 'Cancelled' }

/** Show `jobs` in `ul` (in place), or `emptyText` when there are none. */
export function updateJobs (ul, jobs, app, emptyText) {
  const items = jobs.length ? jobs : [{ id: '', empty: emptyText }]
  keyed(ul, items, (j) => j.id,
    (j) => j.empty ? h('li', { class: 'muted' }) : jobElement(app, j),
    (el, j) => j.empty ? setText(el, j.empty) : updateJob(el, app, j))
}

function jobElement (app, job) {
  const refs = {
    pin: h('span'),
    badge: h('span', { class: 'badge' }),
    where: h('span', { class: 'muted' }),
    progress: h('progress', { max: 1, 'aria-label': 'Progress' }),
    error: h('p', { class: 'error', hidden: true })
  }
  refs.cancel = !app.caps.edit ? null : h('button', {
    type: 'button',
    class: 'link',
    onclick: async () => {
      refs.cancel.disabled = true
      try {
        await app.api.post(`/api/jobs/${encodeURIComponent(job.id)}/cancel`)
      } catch (err) {
        app.toast(err.message, 'error')
        refs.cancel.disabled = false
      }
    }
  }, 'Cancel')
  const li = h('li', { dataset: { jobId: job.id } },
    h('div', { class: 'job-line' }, refs.pin, refs.badge, refs.where, refs.cancel),
    refs.progress, refs.error)
  li._refs = refs
  return li
}

function updateJob (li, app, job) {
  const r = li._refs
  const pin = app.store.pin(job.pin_id)
  const total = Number(job.total) || 0
  const step = Number(job.step) || 0
  const active = job.status === 'queued' || job.status === 'running'
  setAttr(li, 'class', `job ${job.status}`)
  li.dataset.status = job.status
  setText(r.pin, pin ? `Pin ${pin.number}` : KIND_LABEL[job.kind] || 'Fix')
  setAttr(r.badge, 'class', `badge job-${job.status}`)
  setText(r.badge, JOB_LABEL[job.status] || job.status)
  // Steps only once the engine has said how many it takes: the request's own step count
  // ("0/20") is not what a one-step engine then reports ("1/1").
  let where = ''
  if (job.status === 'queued' && job.position) where = `#${job.position} in queue`
  else if (job.status === 'running') where = step > 0 && total ? `step ${step} of ${total}` : 'starting…'
  setText(r.where, where)
  if (r.cancel) r.cancel.hidden = !active
  r.progress.hidden = !active
  if (active && step > 0 && total) {
    setAttr(r.progress, 'max', total)
    if (r.progress.value !== step) r.progress.value = step
  } else if (r.progress.hasAttribute('value')) r.progress.removeAttribute('value') // indeterminate
  r.error.hidden = !job.error
  setText(r.error, job.error || '')
}

/** One job as an element (for lists that are rebuilt; prefer `updateJobs`). */
export function jobItem (app, job) {
  const li = jobElement(app, job)
  updateJob(li, app, job)
  return li
}
