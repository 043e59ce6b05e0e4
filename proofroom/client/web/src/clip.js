// A clip revision on the stage: a <video> kept on the view's transform (so pins and cursors
// sit on its pixels at any zoom), play/pause, frame stepping (buttons and , / . keys) and a
// timeline under the stage with the pins' frames marked. The frame shown is app.state.frame:
// a pin dropped now carries it, and only the pins of that frame (or range) show.
//
// The rendition is the H.264 MP4 where this browser plays it, the VP9 WebM elsewhere
// (Chromium without proprietary codecs). It plays from a blob: URL: the whole clip is a
// few MB, and a blob is seekable frame by frame whatever the server says about ranges.
import { h, isTyping, keyed, setAttr, setText } from './dom.js'

const H264 = 'video/mp4; codecs="avc1.42E01E"'
// Seek a hair past a frame's start: WebM stores times in whole milliseconds, so frame n's
// timestamp can round above n / fps and the frame before would show.
const INTO_FRAME = 0.001

/** Which rendition of `rev` this browser plays: 'mp4' or 'webm'. */
export function renditionFor (video, rev) {
  if (rev.mp4 && video.canPlayType(H264)) return 'mp4'
  return rev.webm ? 'webm' : 'mp4'
}

export function mountClip (stage, app) {
  const video = h('video', {
    class: 'clip-video',
    muted: true,
    playsinline: true,
    preload: 'auto',
    hidden: true,
    'aria-label': 'Clip',
    dataset: { state: 'empty' }
  })
  video.muted = true
  stage.querySelector('#image-canvas').after(video)

  const refs = {
    play: h('button', { type: 'button', class: 'clip-play', 'aria-label': 'Play', title: 'Play / pause', onclick: () => toggle() }, 'Play'),
    back: h('button', { type: 'button', class: 'clip-step', 'aria-label': 'Previous frame', title: 'Previous frame (,)', onclick: () => step(-1) }, '‹ 1'),
    next: h('button', { type: 'button', class: 'clip-step', 'aria-label': 'Next frame', title: 'Next frame (.)', onclick: () => step(1) }, '1 ›'),
    label: h('span', { class: 'clip-frame', 'aria-live': 'off' }),
    compare: h('button', { type: 'button', class: 'ghost', title: 'Compare the first frame with the still it was made from (S / T)', onclick: () => compare('slider') }, 'First frame vs source'),
    track: h('div', { class: 'timeline-track', role: 'slider', tabindex: '0', 'aria-label': 'Frame' }),
    head: h('div', { class: 'timeline-head' }),
    ticks: h('div', { class: 'timeline-ticks' })
  }
  refs.track.append(refs.ticks, refs.head)
  const bar = h('div', { id: 'clip-bar', class: 'clip-bar', hidden: true, onpointerdown: (e) => e.stopPropagation() },
    h('div', { class: 'clip-controls' }, refs.back, refs.play, refs.next, refs.label, refs.compare),
    h('div', { class: 'timeline' }, refs.track))
  stage.append(bar)

  let shown = null // the clip revision on the stage
  let url = null // its blob: URL
  let loading = 0

  const clip = () => {
    const rev = app.revision()
    return rev.media === 'video' ? rev : null
  }
  const frames = () => Math.max(1, Number(shown?.frames) || 1)
  const fps = () => Math.max(1, Number(shown?.fps) || 24)
  const frameAt = (t) => Math.max(0, Math.min(frames() - 1, Math.floor(t * fps() + 1e-3)))

  async function load (rev) {
    const ticket = ++loading
    if (url) URL.revokeObjectURL(url)
    url = null
    const rendition = renditionFor(video, rev)
    video.dataset.rendition = rendition
    video.dataset.state = 'loading'
    try {
      const response = await fetch(app.api.blobUrl(rev[rendition]))
      if (!response.ok) throw new Error(`${response.status}`)
      const blob = await response.blob()
      if (ticket !== loading) return
      url = URL.createObjectURL(blob)
      video.src = url
      video.load()
    } catch (err) {
      if (ticket === loading) app.toast('The clip could not be loaded.', 'error')
    }
  }

  function show () {
    const rev = clip()
    const changed = (rev && rev.id) !== (shown && shown.id)
    shown = rev
    video.hidden = !rev || Boolean(app.state.compare)
    bar.hidden = !rev
    // The picture fits above the clip bar (its height, and its margin).
    const reserve = rev ? bar.offsetHeight + 20 : 0
    if (app.view.reserveBottom !== reserve) {
      app.view.reserveBottom = reserve
      if (app.view.fitted) app.view.fit()
    }
    stage.dataset.media = rev ? 'video' : 'image'
    if (!rev) {
      if (changed) {
        loading++
        video.pause()
        video.removeAttribute('src')
        video.load()
        if (url) URL.revokeObjectURL(url)
        url = null
        video.dataset.state = 'empty'
      }
      return
    }
    if (changed) {
      video.dataset.revision = rev.id
      load(rev)
    }
    place()
    render()
  }

  /** Keep the video on the image's pixels: the same transform the canvas draws with. */
  function place () {
    if (!shown) return
    const { view } = app
    video.style.width = `${shown.width}px`
    video.style.height = `${shown.height}px`
    video.style.transform = `translate(${view.tx}px, ${view.ty}px) scale(${view.scale})`
  }

  function toggle () {
    if (!shown) return
    if (video.paused || video.ended) {
      if (video.ended) video.currentTime = 0
      video.play().catch(() => {}) // a pause before it starts rejects; nothing to say
    } else video.pause()
  }

  function seek (frame) {
    if (!shown) return
    const f = Math.max(0, Math.min(frames() - 1, Math.round(frame)))
    video.pause()
    video.currentTime = f / fps() + (f ? INTO_FRAME : 0)
    app.set('frame', f)
  }

  function step (delta) {
    seek(app.state.frame + delta)
  }

  function compare (mode) {
    const rev = clip()
    if (!rev) return false
    if (!app.sourceStill(rev)) {
      app.toast('This clip does not say which still it was made from.')
      return true
    }
    const current = app.state.compare
    if (mode === 'diff') {
      app.toast('The difference view compares versions of one picture; use the slider (S) or toggle (T).')
      return true
    }
    if (current?.clip && current.mode === 'toggle' && mode === 'toggle') {
      app.set('compare', { ...current, showAfter: !current.showAfter })
      return true
    }
    seek(0)
    app.set('compare', { mode, clip: true, showAfter: true, slider: 0.5, diff: null, stats: null })
    return true
  }

  // Frame tracking while playing: the frame a pin would be dropped on follows the picture.
  let ticking = 0
  function tick () {
    ticking = 0
    syncFrame()
    if (!video.paused && !video.ended) ticking = requestAnimationFrame(tick)
  }
  function syncFrame () {
    if (!shown) return
    app.set('frame', video.ended ? frames() - 1 : frameAt(video.currentTime))
  }
  function stateChanged () {
    const state = video.ended ? 'ended' : video.paused ? 'paused' : 'playing'
    video.dataset.state = state
    setText(refs.play, state === 'playing' ? 'Pause' : 'Play')
    setAttr(refs.play, 'aria-label', state === 'playing' ? 'Pause' : 'Play')
    if (state === 'playing' && !ticking) ticking = requestAnimationFrame(tick)
    syncFrame()
  }
  for (const type of ['play', 'playing', 'pause', 'ended', 'seeked']) video.addEventListener(type, stateChanged)
  video.addEventListener('loadeddata', () => {
    video.dataset.state = 'paused'
    seek(app.state.frame)
  })
  video.addEventListener('error', () => { if (video.getAttribute('src')) app.toast('This browser cannot play the clip.', 'error') })

  function trackFrame (e) {
    const r = refs.track.getBoundingClientRect()
    return Math.round(((e.clientX - r.left) / Math.max(1, r.width)) * (frames() - 1))
  }
  refs.track.addEventListener('pointerdown', (e) => {
    refs.track.setPointerCapture(e.pointerId)
    seek(trackFrame(e))
  })
  refs.track.addEventListener('pointermove', (e) => {
    if (refs.track.hasPointerCapture(e.pointerId)) seek(trackFrame(e))
  })
  refs.track.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
      step(e.key === 'ArrowLeft' ? -1 : 1)
      e.preventDefault()
    } else if (e.key === 'Home' || e.key === 'End') {
      seek(e.key === 'Home' ? 0 : frames() - 1)
      e.preventDefault()
    }
  })
  window.addEventListener('keydown', (e) => {
    if (!shown || e.defaultPrevented || isTyping(e) || e.ctrlKey || e.metaKey || e.altKey) return
    if (e.key === ',' || e.key === '.') {
      step(e.key === ',' ? -1 : 1)
      e.preventDefault()
    }
  })

  const at = (frame) => `${(100 * frame / Math.max(1, frames() - 1)).toFixed(3)}%`

  /** The frame label, the playhead and the pins' marks (updated in place). */
  function render () {
    if (!shown) return
    const f = app.state.frame
    stage.dataset.frame = String(f)
    // Frames count from 0, as the document's `frame` does (and the API, and the export).
    setText(refs.label, `Frame ${f} of 0–${frames() - 1} · ${(f / fps()).toFixed(2)} s`)
    setAttr(refs.track, 'aria-valuenow', String(f))
    setAttr(refs.track, 'aria-valuemax', String(frames() - 1))
    refs.head.style.left = at(f)
    const pins = app.store.pinList().filter((p) => app.onRevision(p) && (p.frame !== null || p.frames))
    keyed(refs.ticks, pins, (p) => p.id,
      (p) => h('button', {
        type: 'button',
        class: 'timeline-pin',
        dataset: { pinId: p.id },
        onclick: (e) => {
          e.stopPropagation()
          app.selectPin(p.id)
        },
        onpointerdown: (e) => e.stopPropagation()
      }),
      (el, p) => {
        const [first, last] = p.frames || [p.frame, p.frame]
        el.dataset.frame = String(first)
        el.style.left = at(first)
        el.style.width = last > first ? `calc(${at(last)} - ${at(first)})` : ''
        el.classList.toggle('range', last > first)
        el.classList.toggle('selected', p.id === app.state.selectedPin)
        el.classList.toggle('here', f >= first && f <= last)
        el.classList.toggle('resolved', p.status === 'resolved')
        setText(el, String(p.number))
        setAttr(el, 'title', `Pin ${p.number}, frame ${first}${last > first ? `–${last}` : ''}: ${p.text}`.slice(0, 300))
      })
  }

  app.on('change:revision', show)
  app.on('change:compare', show)
  app.on('change:frame', render)
  app.on('change:selectedPin', render)
  app.on('seek-frame', (frame) => { if (clip()) seek(frame) })
  app.on('pin-draft', () => { if (shown && !video.paused) seek(app.state.frame) })
  app.store.on('pins', render)
  app.store.on('revisions', show)
  app.view.on('change', place)
  // S / T / D (and the compare bar's toggle) compare a clip's first frame with its source.
  app.compareRevision = (mode) => compare(mode)
  show()
  return { seek, step, toggle, video }
}
