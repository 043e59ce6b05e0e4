// The Fix panel (editors): the selected pin's mask (its region, or one painted or boxed
// on the image), the engine to run it (GET /api/engines: what runs here, and why not),
// and only the parameters that engine uses, saying plainly what it ignores; sending
// queues one job per variant, whose progress shows here and on the canvas.
import { h, replace } from '../dom.js'
import { perFrame } from '../events.js'
import { maskDataUrl, strokesBox } from '../overlay.js'
import { updateJobs } from './jobs.js'

const MAX_DRAFT = 300
// The same rules as the server's draft (server/review/fix_request.py draft_from_texts).
const MENTION = /@[\p{L}\p{N}_.-]+(?:\s+\([^)]*\))?(?:\s+link\b)?/gu
const SENTENCE = /[^.!?\n]+[.!?]*/g
const CHATTER = new RegExp(
  '\\b(?:take this(?: one)?|pick this up|look at this|handle this|on it|any (?:update|news)' +
  '|what do you think|wdyt|thoughts|sounds good|makes sense)\\b' +
  '|^(?:thanks|thank you|thx|ok|okay|agreed|\\+1|sure|yes|no|yep|nope|lgtm|done|great|nice' +
  '|cool|perfect|love it|same|me too|good catch)\\W*$', 'i')
const FILLER = new RegExp(
  '^(?:(?:also|and|so|then|plus|but|oh|hey|hi|ok|okay|please|pls|maybe|just|i think' +
  '|agreed|yes|yep|sure|right|exactly|good point' +
  "|i'd like(?: to)?|i would like(?: to)?|we need to|we should|can we|could we|can you" +
  "|could you|would you|let's|let us)\\b[\\s,:;-]*)+", 'i')
const CLOSING = /[\s,;:-]*\b(?:please|pls|thanks|thank you|thx)\W*$/i
const TRIM = /^[\s.!?,;:-]+|[\s.!?,;:-]+$/g

/**
 * A short prompt of what to make, from the pin's request and its thread: the sentences
 * about the picture, without @mentions, questions to people ("can you take this one?"),
 * acknowledgements and filler ("Also", "can we"). The editor may change it.
 */
export function draftPrompt (pin) {
  const texts = [pin.text || '', ...pin.thread.filter((c) => !c.deleted).map((c) => c.text || '')]
  const kept = []
  for (const text of texts) {
    for (const sentence of text.replace(MENTION, ' ').match(SENTENCE) || []) {
      let core = sentence.split(/\s+/).filter(Boolean).join(' ').replace(TRIM, '')
      if (!core || CHATTER.test(core)) continue
      core = core.replace(FILLER, '').replace(CLOSING, '').replace(TRIM, '')
      if (core.length < 3 || kept.some((k) => k.toLowerCase() === core.toLowerCase())) continue
      kept.push(core[0].toUpperCase() + core.slice(1))
    }
  }
  let draft = kept.join('. ')
  if (draft.length > MAX_DRAFT) draft = draft.slice(0, MAX_DRAFT).replace(/\s+\S*$/, '')
  return draft
}

/** What an engine does not use, said plainly (issue 11: honest controls). */
export function engineNotes (engine) {
  if (!engine) return []
  const uses = new Set(engine.params)
  const notes = []
  if (!uses.has('prompt')) notes.push(`${engine.name} ignores the prompt: it works from the picture around the mask.`)
  else if (engine.name === 'recolor') notes.push('recolor reads only a colour from the prompt ("make the jacket green").')
  if (!uses.has('seed')) notes.push(`${engine.name} ignores the seed: the same request gives the same result, so it makes one variant.`)
  if (engine.hosted) notes.push(`${engine.name} sends the area around the mask to the vendor's service.`)
  return notes
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
  const engine = h('select', { 'aria-label': 'Engine', name: 'engine', onchange: () => { chosenModel = null; showEngine() } })
  const model = h('select', { 'aria-label': 'Model', name: 'model', onchange: () => { chosenModel = model.value } })
  const engineNote = h('ul', { class: 'engine-notes' })
  const prompt = h('textarea', { rows: 3, maxlength: 2000, 'aria-label': 'Prompt', name: 'prompt' })
  const negative = h('input', { type: 'text', maxlength: 2000, 'aria-label': 'Negative prompt', placeholder: 'blurry, text, watermark' })
  const color = h('input', { type: 'text', maxlength: 64, 'aria-label': 'Colour', name: 'color', placeholder: 'green, navy or #2e7d32 (or name it in the prompt)', oninput: () => syncSwatch() })
  const swatch = h('input', { type: 'color', 'aria-label': 'Pick a colour', value: '#2e7d32', oninput: () => { color.value = swatch.value } })
  const seed = h('input', { type: 'number', min: 0, max: 4294967295, step: 1, value: randomSeed(), 'aria-label': 'Seed', class: 'seed-input', inputmode: 'numeric' })
  const variants = h('input', { type: 'number', min: 1, max: 8, value: 1, 'aria-label': 'Variants' })
  const steps = h('input', { type: 'number', min: 1, max: 150, value: 20, 'aria-label': 'Steps' })
  const strength = h('input', { type: 'number', min: 0.05, max: 1, step: 0.05, value: 1, 'aria-label': 'Strength' })
  const guidance = h('input', { type: 'number', min: 0, max: 30, step: 0.5, value: 7.5, 'aria-label': 'Guidance' })
  const send = h('button', { type: 'submit', class: 'primary send-fix' }, 'Send fix')
  const error = h('p', { class: 'error', hidden: true })
  const jobs = h('ul', { class: 'jobs' })
  const locksNote = h('p', { class: 'muted', hidden: true }, 'Locked regions (hatched) are left untouched.')
  let draftedFor = null // pin id whose drafted prompt the box shows, until edited
  prompt.addEventListener('input', () => { draftedFor = null })
  let engines = [] // GET /api/engines
  let defaultEngine = null
  let chosenModel = null

  // Each parameter's part of the form: shown only when the chosen engine uses it.
  const promptPart = h('div', { class: 'param', dataset: { param: 'prompt' } },
    h('h3', {}, 'Prompt'),
    prompt,
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'link', onclick: () => redraft(true) }, 'Redraft from the pin')))
  const colorPart = h('label', { class: 'field param', dataset: { param: 'color' } }, 'Colour',
    h('span', { class: 'with-button' }, color, swatch))
  const negativePart = h('label', { class: 'field param', dataset: { param: 'negative_prompt' } }, 'Negative prompt', negative)
  const stepsPart = h('label', { class: 'field param', dataset: { param: 'steps' } }, 'Steps', steps)
  const strengthPart = h('label', { class: 'field param', dataset: { param: 'strength' } }, 'Strength', strength)
  const guidancePart = h('label', { class: 'field param', dataset: { param: 'guidance' } }, 'Guidance', guidance)
  const more = h('details', { class: 'more-params' }, h('summary', {}, 'More settings'),
    negativePart, stepsPart, strengthPart, guidancePart)
  const seedPart = h('label', { class: 'field param seed-field', dataset: { param: 'seed' } }, 'Seed',
    h('span', { class: 'with-button' }, seed,
      h('button', { type: 'button', class: 'ghost', title: 'New random seed', 'aria-label': 'New random seed', onclick: () => { seed.value = randomSeed() } }, '⟳')))
  const variantsPart = h('label', { class: 'field param variants-field', dataset: { param: 'seed' } }, 'Variants', variants)
  const modelPart = h('label', { class: 'field model-field', hidden: true }, 'Model', model)

  const form = h('form', { class: 'fix-form', onsubmit: (e) => { e.preventDefault(); submit() } },
    summary,
    h('h3', {}, 'Mask'),
    maskInfo,
    h('div', { class: 'tool-row' },
      toolButton('brush', 'Brush', 'B'), toolButton('erase', 'Eraser', 'E'), toolButton('box', 'Box', 'X'),
      h('button', { type: 'button', class: 'ghost', onclick: clearMask }, 'Clear')),
    h('label', { class: 'field' }, 'Brush size', brush),
    locksNote,
    h('h3', {}, 'Engine'),
    h('div', { class: 'engine-row' },
      h('label', { class: 'field' }, 'Engine', engine),
      modelPart),
    engineNote,
    promptPart,
    colorPart,
    more,
    h('div', { class: 'seed-row' }, seedPart, variantsPart),
    error,
    send,
    h('h3', {}, 'Jobs for this pin'),
    jobs)
  root.append(none, form)

  loadEngines()

  async function loadEngines () {
    try {
      const listing = await app.api.get('/api/engines')
      engines = listing.engines.filter((e) => e.kind === 'edit')
      defaultEngine = listing.default.edit
    } catch (err) {
      showError(`The list of engines did not load: ${err.message}`)
      return
    }
    replace(engine, engines.map((e) => h('option', {
      value: e.name,
      disabled: !e.available,
      title: e.available ? null : e.reason
    }, e.available ? label(e) : `${label(e)} — ${e.reason}`)))
    engine.value = defaultEngine
    showEngine()
  }

  function label (e) {
    return e.name === defaultEngine ? `${e.name} (default)` : e.name
  }

  function chosen () {
    return engines.find((e) => e.name === engine.value) || null
  }

  /** Show the chosen engine's models and only the parameters it uses. */
  function showEngine () {
    const e = chosen()
    const uses = new Set(e ? e.params : [])
    for (const part of form.querySelectorAll('.param')) part.hidden = !uses.has(part.dataset.param)
    more.hidden = ![negativePart, stepsPart, strengthPart, guidancePart].some((p) => !p.hidden)
    const models = e ? e.models : []
    modelPart.hidden = models.length === 0
    replace(model, models.map((m) => h('option', { value: m }, m === e.default_model ? `${m} (default)` : m)))
    if (models.length) model.value = models.includes(chosenModel) ? chosenModel : e.default_model
    replace(engineNote, engineNotes(e).map((n) => h('li', {}, n)))
    form.dataset.engine = e ? e.name : ''
    render()
  }

  function syncSwatch () {
    const v = color.value.trim()
    if (/^#[0-9a-f]{6}$/i.test(v)) swatch.value = v
  }

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
      ? `${strokes.every((st) => st.mode === 'box') ? 'Box mask' : 'Painted mask'}, ${box[2]}×${box[3]} px. Paint more, or clear it to use the pin's region.`
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
      const e = chosen()
      const n = e && !e.params.includes('seed') ? 1 : Number(variants.value) || 1
      send.disabled = Boolean(e && !e.available)
      send.textContent = `Send fix (${n} variant${n > 1 ? 's' : ''})`
    }
    const mine = store.jobList().filter((j) => j.pin_id === p.id).reverse().slice(0, 8)
    updateJobs(jobs, mine, app, 'None yet.') // in place: a Cancel press survives progress
  })

  async function submit () {
    const p = pin()
    if (!p) return
    const strokes = app.maskOf(p.id)
    const box = strokesBox(strokes, app.session.width, app.session.height)
    const e = chosen()
    const uses = new Set(e ? e.params : [])
    const body = {}
    if (e) body.engine = e.name
    if (e && e.models.length) body.model = model.value
    if (uses.has('prompt')) body.prompt = prompt.value.trim()
    if (uses.has('negative_prompt') && negative.value.trim()) body.negative_prompt = negative.value.trim()
    if (uses.has('color') && color.value.trim()) body.color = color.value.trim()
    if (uses.has('seed')) {
      body.seed = clampInt(seed.value, 0, 4294967295)
      body.variants = clampInt(variants.value, 1, 8)
    }
    if (uses.has('steps')) body.steps = clampInt(steps.value, 1, 150)
    if (uses.has('strength')) body.strength = Math.min(1, Math.max(0.05, Number(strength.value) || 1))
    if (uses.has('guidance')) body.guidance = Math.min(30, Math.max(0, Number(guidance.value) || 7.5))
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
      app.toast(`Fix sent to ${body.engine || 'the default engine'}: ${ids.length} variant${ids.length === 1 ? '' : 's'} queued.`)
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
