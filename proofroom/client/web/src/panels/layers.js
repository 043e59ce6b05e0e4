// The Versions panel: fix jobs in flight (progress, cancel), the versions grouped by pin
// and round (a round is one fix request; its variants sit side by side as thumbnails), a
// drop zone per pin for a retouched upload, and for the selected version its provenance,
// the compare modes and the approvers' decisions. Also the caption on the stage that says
// what the canvas shows.
//
// Everything here is updated in place, keyed by id: progress streams a few times a second
// and decisions arrive from other people, and a rebuilt list would take the button being
// pressed, the field being focused and the note being typed away from under a person.

import { h, ago, isTyping, keyed, setText, setAttr } from '../dom.js'
import { perFrame } from '../events.js'
import { isMissingEndpoint } from '../api.js'
import { DECISION_LABEL } from '../contract.js'
import { differenceOf } from '../compare.js'
import { updateJobs } from './jobs.js'
import { canvasCaption, groupVersions, patchBox, siblingsOf, stateLabel, variantOf, versionName } from '../versions.js'

const COMPARE_MODES = [['slider', 'Slider'], ['side', 'Side by side'], ['toggle', 'Toggle'], ['diff', 'Difference']]


// -- the panel ------------------------------------------------------------------------------

export function mountLayersPanel (root, app) {
  const { store, presence, api } = app
  const jobsEl = h('ul', { class: 'jobs', 'aria-label': 'Fixes in progress' })
  const detail = h('div', { class: 'layer-detail', hidden: true })
  const list = h('ul', { class: 'layer-list version-groups', 'aria-label': 'Versions' })
  const empty = h('p', { class: 'muted empty' }, app.caps.edit
    ? 'No versions yet. Make them from a pin with “Fix”, or drop a retouched image here.'
    : 'No versions yet. Editors make them from pins with “Fix”.')
  root.append(
    h('h2', {}, 'In progress'), jobsEl,
    detail,
    h('h2', {}, 'Versions'), empty, list)
  const caption = h('div', { id: 'canvas-caption', class: 'canvas-caption', role: 'status', 'aria-live': 'polite' })
  document.getElementById('stage')?.append(caption)
  let decisionsAvailable = app.caps.decide
  let pendingSelect = null // a version this page uploaded, selected once it arrives

  const renderJobs = perFrame(() => {
    const recent = store.jobList().filter((j) => j.status === 'queued' || j.status === 'running' ||
      (j.status !== 'done' && j.finished_at && Date.now() / 1000 - j.finished_at < 600))
    updateJobs(jobsEl, recent, app, 'Nothing running.')
  })

  const renderCaption = perFrame(() => {
    setText(caption, canvasCaption(store, app.state.selectedLayer, app.revision()))
    caption.dataset.layer = app.state.selectedLayer || ''
  })

  // -- the grouped list -----------------------------------------------------------------------

  const renderList = perFrame(() => {
    const pins = new Map(store.pinList().map((p) => [p.id, p]))
    const groups = groupVersions(store.layerList(), pins)
    // An editor can drop a version onto the selected pin even before it has any.
    const sel = app.caps.edit && app.state.selectedPin && pins.get(app.state.selectedPin)
    if (sel && !groups.some((g) => g.pinId === sel.id)) {
      groups.push({ pinId: sel.id, pin: sel, rounds: [] })
      groups.sort((a, b) => (a.pin?.number ?? Infinity) - (b.pin?.number ?? Infinity))
    }
    empty.hidden = groups.length > 0
    keyed(list, groups, (g) => g.pinId, pinGroupElement, updatePinGroup)
  })

  function pinGroupElement (group) {
    const refs = {
      title: h('span', { class: 'pin-group-title' }),
      rounds: h('ol', { class: 'rounds', reversed: true }),
      error: h('p', { class: 'error', role: 'alert', hidden: true }),
      hint: h('p', { class: 'muted drop-hint' }, 'Drop a retouched image here: the whole picture, or a patch the size of the pin’s region.')
    }
    const li = h('li', { class: 'pin-versions', dataset: { pinId: group.pinId } },
      h('div', { class: 'pin-group-head' }, refs.title),
      refs.rounds)
    li._refs = refs
    if (app.caps.edit) {
      const input = h('input', { type: 'file', accept: 'image/png,image/jpeg,image/webp', hidden: true, 'aria-label': 'Upload a version' })
      input.addEventListener('change', () => {
        if (input.files[0]) upload(li, input.files[0])
        input.value = ''
      })
      li.querySelector('.pin-group-head').append(
        h('button', { type: 'button', class: 'link upload-version', onclick: () => input.click() }, 'Upload…'), input)
      refs.rounds.before(refs.hint, refs.error) // said where the file was dropped
      li.addEventListener('dragover', (e) => {
        if (![...e.dataTransfer.types].includes('Files')) return
        e.preventDefault()
        e.dataTransfer.dropEffect = 'copy'
        li.classList.add('drop-target')
      })
      li.addEventListener('dragleave', (e) => { if (!li.contains(e.relatedTarget)) li.classList.remove('drop-target') })
      li.addEventListener('drop', (e) => {
        e.preventDefault()
        li.classList.remove('drop-target')
        const file = e.dataTransfer.files[0]
        if (file) upload(li, file)
      })
    }
    return li
  }

  function updatePinGroup (li, group) {
    const r = li._refs
    li._pin = group.pin
    const label = group.pin ? `Pin ${group.pin.number}` : 'A removed pin'
    setText(r.title, group.pin?.text ? `${label} · ${group.pin.text}` : label)
    setAttr(r.title, 'title', group.pin?.text || null)
    keyed(r.rounds, group.rounds, (round) => round.fix, roundElement, updateRound)
  }

  function roundElement () {
    const refs = {
      label: h('span', { class: 'round-label' }),
      prompt: h('span', { class: 'muted round-prompt' }),
      strip: h('div', { class: 'variants', role: 'group' })
    }
    const li = h('li', { class: 'round' }, h('div', { class: 'round-head' }, refs.label, refs.prompt), refs.strip)
    li._refs = refs
    refs.strip.addEventListener('keydown', (e) => {
      // Arrow keys move between the thumbnails of a round (and show each on the canvas).
      if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return
      const buttons = [...refs.strip.querySelectorAll('.layer-row')]
      const at = buttons.indexOf(document.activeElement)
      if (at < 0) return
      const next = buttons[(at + (e.key === 'ArrowRight' ? 1 : -1) + buttons.length) % buttons.length]
      next.focus()
      app.selectLayer(next.dataset.layerId)
      e.preventDefault()
      e.stopPropagation()
    })
    return li
  }

  function updateRound (li, round) {
    const r = li._refs
    const first = round.layers[0]
    const upload = first.source === 'upload'
    li.dataset.current = String(Boolean(round.current))
    li.dataset.fix = round.fix
    const what = upload ? 'Uploaded version' : round.layers.length > 1 || Number(first.params.variants) > 1
      ? `${Math.max(round.layers.length, Number(first.params.variants) || 0)} variants`
      : '1 variant'
    const kept = round.layers.find((l) => l.state === 'approved')
    li.dataset.approved = String(Boolean(kept))
    setText(r.label, `Round ${round.number}${round.current ? ' (current)' : ''} · ${what}` +
      (kept ? ` · ${versionName(kept)} approved` : ''))
    setText(r.prompt, first.params.prompt ? `“${first.params.prompt}”` : '')
    setAttr(r.strip, 'aria-label', `Round ${round.number} variants`)
    keyed(r.strip, round.layers, (l) => l.id, versionElement, (el, layer) => updateVersion(el, layer, round.layers))
  }

  function versionElement (layer) {
    const refs = {
      name: h('span', { class: 'layer-name' }),
      variant: h('span', { class: 'muted variant-of' }),
      badge: h('span', { class: 'badge' })
    }
    const button = h('button', {
      type: 'button',
      class: 'layer-row',
      dataset: { layerId: layer.id },
      onclick: () => {
        app.selectLayer(layer.id)
        app.view.reveal(store.layer(layer.id)?.box || layer.box)
      }
    },
    h('img', { class: 'thumb', src: api.blobUrl(layer.patch), alt: '', loading: 'lazy', decoding: 'async' }),
    refs.name, refs.variant, refs.badge)
    button._refs = refs
    return button
  }

  function updateVersion (button, layer, siblings) {
    const r = button._refs
    const selected = layer.id === app.state.selectedLayer
    button.classList.toggle('selected', selected)
    setAttr(button, 'aria-pressed', String(selected))
    setText(r.name, `Version ${layer.index + 1}`)
    const { k, n } = variantOf(layer, siblings)
    setText(r.variant, n > 1 ? `${k} of ${n}` : '')
    setAttr(r.badge, 'class', `badge state-${layer.state}`)
    r.badge.dataset.state = layer.state
    setText(r.badge, stateLabel(layer.state))
    setAttr(button, 'title', `${versionName(layer)}${n > 1 ? `, variant ${k} of ${n}` : ''}: ${stateLabel(layer.state)}`)
  }

  async function upload (li, file) {
    const pin = li._pin
    const r = li._refs
    r.error.hidden = true
    if (!pin) return
    const { width, height } = app.session
    const form = new FormData()
    form.append('image', file)
    let size = null
    try {
      const bitmap = await createImageBitmap(file)
      size = [bitmap.width, bitmap.height]
      bitmap.close()
    } catch (_err) {
      // Not an image this browser reads: the server says what it accepts.
    }
    if (size && (size[0] !== width || size[1] !== height)) {
      if (size[0] > width || size[1] > height) {
        return showUploadError(li, `The image is ${size[0]}×${size[1]} px, bigger than the picture (${width}×${height}). ` +
          `Drop the whole picture at ${width}×${height}, or a smaller patch.`)
      }
      form.append('box', JSON.stringify(patchBox(pin, size, width, height)))
    }
    li.classList.add('uploading')
    try {
      const reply = await api.request('POST', `/api/sessions/${encodeURIComponent(app.session.id)}/pins/${encodeURIComponent(pin.id)}/versions`, form)
      const { layer } = await reply.json()
      app.toast(`Uploaded as a new version of pin ${pin.number}.`)
      if (store.layer(layer)) app.selectLayer(layer)
      else pendingSelect = layer
    } catch (err) {
      showUploadError(li, err.message)
    } finally {
      li.classList.remove('uploading')
    }
  }

  function showUploadError (li, message) {
    li._refs.error.hidden = false
    setText(li._refs.error, `Upload refused: ${message}`)
    li._refs.error.scrollIntoView({ block: 'nearest' })
  }

  // -- the selected version -----------------------------------------------------------------

  // Built once per selected version, then updated in place: the note being typed survives
  // other people's decisions, and the buttons being pressed stay where they are.
  let shown = null // {id, refs}

  const renderDetail = perFrame(() => {
    const layer = app.state.selectedLayer && store.layer(app.state.selectedLayer)
    detail.hidden = !layer
    if (!layer) {
      if (shown) detail.replaceChildren()
      shown = null
      return
    }
    if (shown?.id !== layer.id) shown = { id: layer.id, refs: buildDetail(layer) }
    updateDetail(shown.refs, layer)
  })

  function buildDetail (layer) {
    const refs = {
      title: h('h2'),
      badge: h('span', { class: 'badge' }),
      meta: h('p', { class: 'muted' }),
      prompt: h('p', { class: 'prompt' }),
      params: h('dl', { class: 'params' }),
      decisions: h('div', { class: 'decisions-host' }),
      compare: {}
    }
    const modes = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Compare with its parent' },
      refs.compare.off = h('button', { type: 'button', onclick: () => app.set('compare', null) }, 'Off'),
      COMPARE_MODES.map(([mode, label]) => {
        refs.compare[mode] = h('button', { type: 'button', dataset: { compare: mode }, onclick: () => startCompare(app, mode) }, label)
        return refs.compare[mode]
      }))
    refs.form = decisionsAvailable ? decisionForm(layer.id) : null
    detail.replaceChildren(
      h('div', { class: 'panel-head' },
        refs.title, refs.badge,
        h('button', { type: 'button', class: 'ghost', 'aria-label': 'Close version', onclick: () => app.selectLayer(null) }, '×')),
      refs.meta, refs.prompt, refs.params, modes, refs.decisions,
      ...(refs.form ? [refs.form.el] : []))
    return refs
  }

  function updateDetail (refs, layer) {
    const p = layer.params
    const pin = store.pin(layer.pin_id)
    const siblings = siblingsOf(store, layer)
    const { k, n } = variantOf(layer, siblings)
    setText(refs.title, `Version ${layer.index + 1}`)
    setAttr(refs.badge, 'class', `badge state-${layer.state}`)
    refs.badge.dataset.state = layer.state
    setText(refs.badge, stateLabel(layer.state))
    setText(refs.meta, [
      `${presence.nameOf(layer.author)} · ${ago(layer.created_at)}`,
      pin ? `pin ${pin.number}` : '',
      n > 1 ? `variant ${k} of ${n} ([ and ] flip)` : '',
      layer.source === 'upload' ? 'uploaded' : ''
    ].filter(Boolean).join(' · '))
    refs.prompt.hidden = !p.prompt
    setText(refs.prompt, p.prompt || '')
    const rows = [['Engine', p.engine], ['Model', p.model], ['Seed', p.seed], ['Steps', p.steps], ['Strength', p.strength]]
      .filter(([, v]) => v !== undefined && v !== null && v !== '')
    const params = rows.map(([key, v]) => `${key}=${v}`).join('|')
    if (refs.params.dataset.shown !== params) {
      refs.params.dataset.shown = params
      refs.params.replaceChildren(...rows.flatMap(([key, v]) => [h('dt', {}, key), h('dd', {}, String(v))]))
    }
    const compare = app.state.compare
    setAttr(refs.compare.off, 'aria-pressed', String(!compare))
    for (const [mode] of COMPARE_MODES) setAttr(refs.compare[mode], 'aria-pressed', String(compare?.mode === mode))
    const decided = JSON.stringify(layer.decisions) + presence.nameOf(layer.author)
    if (refs.decisions.dataset.shown !== decided) {
      refs.decisions.dataset.shown = decided
      refs.decisions.replaceChildren(decisionsList(layer))
    }
    if (refs.form) refs.form.update(layer, siblings)
  }

  function decisionsList (layer) {
    const entries = Object.entries(layer.decisions)
    if (entries.length === 0) return h('p', { class: 'muted' }, 'No decision yet.')
    return h('ul', { class: 'decisions' }, entries.map(([user, d]) => h('li', {},
      h('strong', {}, presence.nameOf(user)), ' ',
      h('span', { class: `badge decision-${d?.decision}` }, DECISION_LABEL[d?.decision] || String(d?.decision)),
      d?.note ? h('p', { class: 'note' }, d.note) : null,
      h('span', { class: 'muted' }, ago(d?.at)))))
  }

  function decisionForm (layerId) {
    const note = h('textarea', { rows: 2, placeholder: 'Note (needed to request changes)', 'aria-label': 'Decision note', maxlength: 2000 })
    const hint = h('p', { class: 'muted keep-hint', hidden: true })
    const decide = async (decision, button) => {
      if (decision === 'request_changes' && !note.value.trim()) {
        note.focus()
        app.toast('Say what should change in the note.')
        return
      }
      button.disabled = true
      try {
        await api.post(`/api/sessions/${app.session.id}/layers/${encodeURIComponent(layerId)}/decision`,
          { decision, note: note.value.trim() })
        note.value = ''
      } catch (err) {
        if (isMissingEndpoint(err)) {
          decisionsAvailable = false
          app.toast('Decisions are not available on this server yet.')
        } else app.toast(err.message, 'error')
      } finally {
        button.disabled = false
      }
    }
    const btn = (decision, label, cls) => {
      const b = h('button', { type: 'button', class: cls, dataset: { decision }, onclick: () => decide(decision, b) }, label)
      return b
    }
    const approve = btn('approve', 'Approve', 'approve')
    const el = h('div', { class: 'decide' },
      note,
      h('div', { class: 'actions' },
        approve,
        btn('request_changes', 'Request changes', 'changes'),
        btn('reject', 'Reject', 'reject')),
      hint)
    return {
      el,
      update (layer, siblings) {
        // Photoshop's "keep one": approving a variant discards (supersedes) the others.
        const others = siblings.filter((l) => l.id !== layer.id)
        const kept = others.find((l) => l.state === 'approved')
        setText(approve, others.length && !kept ? 'Approve (keep this variant)' : 'Approve')
        hint.hidden = !others.length
        setText(hint, kept
          ? `${versionName(kept)} of this round is approved; withdraw it to approve this one.`
          : others.length ? `Approving keeps this variant: the ${others.length} other${others.length > 1 ? 's' : ''} of this round stop waiting for review.` : '')
      }
    }
  }

  // -- flipping between variants --------------------------------------------------------------

  /** Select the previous (-1) or next (+1) variant of the selected version's round. */
  function flip (direction) {
    const selected = app.state.selectedLayer && store.layer(app.state.selectedLayer)
    if (!selected) {
      // Nothing selected: start with the newest round still waiting for review.
      const waiting = store.layerList().filter((l) => l.state === 'pending')
      const last = waiting[waiting.length - 1]
      if (!last) return
      const round = siblingsOf(store, last)
      app.selectLayer((round.find((l) => l.state === 'pending') || last).id)
      return
    }
    const round = siblingsOf(store, selected)
    const at = round.findIndex((l) => l.id === selected.id)
    app.selectLayer(round[(at + direction + round.length) % round.length].id)
  }

  window.addEventListener('keydown', (e) => {
    if (e.defaultPrevented || isTyping(e) || e.ctrlKey || e.metaKey || e.altKey) return
    if (e.key !== '[' && e.key !== ']') return
    flip(e.key === ']' ? 1 : -1)
    e.preventDefault()
  })

  store.on('jobs', () => { renderJobs(); app.redraw() })
  store.on('layers', () => {
    if (pendingSelect && store.layer(pendingSelect)) {
      app.selectLayer(pendingSelect) // the version this page just uploaded
      pendingSelect = null
    }
    renderList(); renderDetail(); renderCaption(); app.redraw()
  })
  store.on('pins', () => renderList())
  presence.on('names', () => renderDetail())
  app.on('change:selectedLayer', () => {
    renderList(); renderDetail(); renderCaption()
    const button = list.querySelector(`.layer-row[data-layer-id="${CSS.escape(app.state.selectedLayer || '')}"]`)
    button?.scrollIntoView({ block: 'nearest' })
    // Flipping with the keyboard moves the focus along with the selection.
    if (button && list.contains(document.activeElement)) button.focus({ preventScroll: true })
  })
  app.on('change:selectedPin', () => renderList())
  app.on('change:compare', () => renderDetail())
  app.on('change:revision', renderCaption)
  store.on('revisions', renderCaption)
  setInterval(renderJobs, 30000) // let finished jobs age out of the list
  renderJobs()
  renderList()
  renderDetail()
  renderCaption()
}

/** Start a compare mode; the difference view is computed from the images first. */
export async function startCompare (app, mode) {
  // A clip compares its first frame with its source still instead (clip.js).
  if (app.compareRevision && app.compareRevision(mode)) return
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
