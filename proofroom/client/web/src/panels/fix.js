// The Fix panel (editors): the selected pin's mask (its region, or one painted or boxed
// on the image), a prompt drafted from its thread, seed, variants, steps and strength;
// sending queues one job per variant, whose progress shows here and on the canvas.
import { h, replace } from '../dom.js'
import { perFrame } from '../events.js'
import { maskDataUrl, strokesBox } from '../overlay.js'
import { jobItem } from './layers.js'

/** The server's first prompt, from the pin's words and its thread (the editor may change it). */
export function draftPrompt (pin) {
  return [pin.text, ...pin.thread.filter((c) => !c.deleted).map((c) => c.text)]
    .map((t) => t.trim()).filter(Boolean).join('. ').slice(0, 2000)
}

export function mountFixPanel (root, app) {
  const { store } = app
  const none = h('p', { class: 'muted' }, 'Select a pin to fix: click it on the image or in the Pins list.')
  const summary = h('p', { class: 'pin-summary' })
  const maskInfo = h('p', { class: 'mask-info' })
  const brush = h('input', {
    type: 'range', min: 4, max: 120, value: app.state.brush, 'aria-label': 'Brush size',
    oninput: (e) => app.set('brush', Number(e.target.value))
  })
  const toolButton = (tool, label, key) => h('button', {
    type: 'button', dataset: { tool }, title: `${label} (${key})`, onclick: () => app.set('tool', tool)
  }, label)
  const prompt = h('textarea', { rows: 3, maxlength: 2000, 'aria-label': 'Prompt', name: 'prompt' })
  const negative = h('input', { type: 'text', maxlength: 2000, 'aria-label': 'Negative prompt', placeholder: 'blurry, text, watermark' })
  const seed = h('input', { type: 'number', min: 0, max: 4294967295, step: 1, value: randomSeed(), 'aria-label': 'Seed' })
  const variants = h('input', { type: 'number', min: 1, max: 8, value: 1, 'aria-label': 'Variants' })
  const steps = h('input', { type: 'number', min: 1, max: 150, value: 20, 'aria-label': 'Steps' })
  const strength = h('input', { type: 'number', min: 0.05, max: 1, step: 0.05, value: 1, 'aria-label': 'Strength' })
  const send = h('button', { type: 'submit', class: 'primary send-fix' }, 'Send fix')
  const error = h('p', { class: 'error', hidden: true })
  const jobs = h('ul', { class: 'jobs' })
  const locksNote = h('p', { class: 'muted', hidden: true }, 'Locked regions (hatched) are left untouched.')
  let draftedFor = null // pin id whose drafted prompt the box shows, until edited
  prompt.addEventListener('input', () => { draftedFor = null })

  const form = h('form', { class: 'fix-form', onsubmit: (e) => { e.preventDefault(); submit() } },
    summary,
    h('h3', {}, 'Mask'),
    maskInfo,
    h('div', { class: 'tool-row' },
      toolButton('brush', 'Brush', 'B'), toolButton('erase', 'Eraser', 'E'), toolButton('box', 'Box', 'X'),
      h('button', { type: 'button', class: 'ghost', onclick: clearMask }, 'Clear')),
    h('label', { class: 'field' }, 'Brush size', brush),
    locksNote,
    h('h3', {}, 'Prompt'),
    prompt,
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'link', onclick: () => redraft(true) }, 'Redraft from the thread')),
    h('details', {}, h('summary', {}, 'Negative prompt, steps, strength'),
      h('label', { class: 'field' }, 'Negative prompt', negative),
      h('label', { class: 'field' }, 'Steps', steps),
      h('label', { class: 'field' }, 'Strength', strength)),
    h('div', { class: 'grid2' },
      h('label', { class: 'field' }, 'Seed',
        h('span', { class: 'with-button' }, seed,
          h('button', { type: 'button', class: 'ghost', title: 'New random seed', 'aria-label': 'New random seed', onclick: () => { seed.value = randomSeed() } }, '⟳'))),
      h('label', { class: 'field' }, 'Variants', variants)),
    error,
    send,
    h('h3', {}, 'Jobs for this pin'),
    jobs)
  root.append(none, form)

  function pin () {
    return app.state.selectedPin && store.pin(app.state.selectedPin)
  }

  function clearMask () {
    const p = pin()
    if (p) app.masks.set(p.id, [])
    app.emit('mask')
    app.redraw()
  }

  function redraft (force) {
    const p = pin()
    if (!p) return
    if (force || draftedFor === p.id) {
      prompt.value = draftPrompt(p)
      draftedFor = p.id
    }
  }

  const render = perFrame(() => {
    const p = pin()
    none.hidden = Boolean(p)
    form.hidden = !p
    if (!p) return
    summary.textContent = `Pin ${p.number ?? ''}: ${p.text}`
    const strokes = app.maskOf(p.id)
    const box = strokesBox(strokes, app.session.width, app.session.height)
    maskInfo.textContent = box
      ? `Painted mask, ${box[2]}×${box[3]} px. Paint more, or clear it to use the pin's region.`
      : p.region
        ? `The pin's region, ${p.region[2]}×${p.region[3]} px. Paint or box to use a mask instead.`
        : 'Paint (B) or box (X) the area to change on the image.'
    locksNote.hidden = store.metaInfo().locks.length === 0
    for (const b of form.querySelectorAll('[data-tool]')) b.setAttribute('aria-pressed', String(app.state.tool === b.dataset.tool))
    if (p.status !== 'open') {
      send.disabled = true
      send.textContent = 'Reopen the pin to fix it'
    } else {
      send.disabled = false
      send.textContent = `Send fix (${Number(variants.value) || 1} variant${Number(variants.value) > 1 ? 's' : ''})`
    }
    const mine = store.jobList().filter((j) => j.pin_id === p.id).reverse().slice(0, 8)
    replace(jobs, mine.length ? mine.map((j) => jobItem(app, j)) : h('li', { class: 'muted' }, 'None yet.'))
  })

  async function submit () {
    const p = pin()
    if (!p) return
    const strokes = app.maskOf(p.id)
    const box = strokesBox(strokes, app.session.width, app.session.height)
    const body = {
      prompt: prompt.value.trim(),
      negative_prompt: negative.value.trim() || undefined,
      seed: clampInt(seed.value, 0, 4294967295),
      variants: clampInt(variants.value, 1, 8),
      steps: clampInt(steps.value, 1, 150),
      strength: Math.min(1, Math.max(0.05, Number(strength.value) || 1))
    }
    if (box) body.mask = maskDataUrl(strokes, app.session.width, app.session.height)
    else if (p.region) body.region = p.region
    else {
      showError('Paint or box the area to change first (B or X), or drop the pin as a region.')
      return
    }
    showError('')
    send.disabled = true
    try {
      const reply = await app.api.post(`/api/sessions/${app.session.id}/pins/${encodeURIComponent(p.id)}/fix`, body)
      const ids = (reply.jobs || []).map((j) => (typeof j === 'string' ? j : j.id))
      for (const id of ids) app.jobBoxes.set(id, box || p.region)
      app.toast(`Fix sent: ${ids.length} variant${ids.length === 1 ? '' : 's'} queued.`)
      seed.value = randomSeed() // the next try explores new variants
      app.redraw()
    } catch (err) {
      showError(err.message)
    } finally {
      send.disabled = false
      render()
    }
  }

  function showError (message) {
    error.textContent = message
    error.hidden = !message
  }

  variants.addEventListener('input', render)
  form.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault()
      submit()
    }
  })
  app.on('change:selectedPin', () => { redraft(true); showError(''); render() })
  app.on('change:tool', render)
  app.on('mask', render)
  store.on('pins', (ids) => {
    if (ids.has(app.state.selectedPin)) {
      redraft(false)
      render()
    }
  })
  store.on('jobs', render)
  store.on('meta', render)
  redraft(true)
  render()
  return { submit }
}

function randomSeed () {
  return crypto.getRandomValues(new Uint32Array(1))[0]
}

function clampInt (value, lo, hi) {
  const n = Math.round(Number(value))
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : lo
}
