// Controls over the stage while comparing a version with its parent: the slider handle,
// the before/after switch, the side-by-side labels and the difference figures.
import { h, replace } from './dom.js'
import { startCompare } from './panels/layers.js'

const TITLES = { slider: 'Before | After', side: 'Side by side', toggle: 'Toggle', diff: 'Difference' }

export function mountCompareUi (host, app) {
  const handle = h('div', { class: 'slider-handle', role: 'slider', 'aria-label': 'Before and after', tabindex: '0' })
  const bar = h('div', { class: 'compare-bar', onpointerdown: (e) => e.stopPropagation() })
  host.append(handle, bar)

  const setSlider = (value) => {
    const c = app.state.compare
    if (c) app.set('compare', { ...c, slider: Math.max(0, Math.min(1, value)) })
  }
  handle.addEventListener('pointerdown', (e) => {
    e.stopPropagation()
    handle.setPointerCapture(e.pointerId)
  })
  handle.addEventListener('pointermove', (e) => {
    if (!handle.hasPointerCapture(e.pointerId)) return
    const r = host.getBoundingClientRect()
    setSlider((e.clientX - r.left) / r.width)
  })
  handle.addEventListener('keydown', (e) => {
    const c = app.state.compare
    if (!c) return
    if (e.key === 'ArrowLeft') setSlider(c.slider - 0.05)
    else if (e.key === 'ArrowRight') setSlider(c.slider + 0.05)
    else return
    e.preventDefault()
  })

  function render () {
    const c = app.state.compare
    host.hidden = !c
    host.dataset.mode = c ? c.mode : ''
    // Pins and cursors would sit on one half only: the stage hides them side by side.
    host.parentElement.dataset.compare = c ? c.mode : ''
    if (!c) return
    handle.hidden = c.mode !== 'slider'
    handle.style.left = `${c.slider * 100}%`
    handle.setAttribute('aria-valuenow', String(Math.round(c.slider * 100)))
    const stats = c.stats
    replace(bar,
      h('strong', {}, TITLES[c.mode]),
      c.mode === 'toggle'
        ? h('button', { type: 'button', class: 'primary', onclick: () => startCompare(app, 'toggle') },
          c.showAfter ? 'Showing after (T)' : 'Showing before (T)')
        : null,
      c.mode === 'diff'
        ? h('span', { class: 'muted' }, stats
          ? `${stats.changed.toLocaleString()} px changed (${(100 * stats.changed / stats.total).toFixed(1)}% of the box), largest change ${stats.max}/255`
          : 'Computing…')
        : null,
      h('button', { type: 'button', class: 'ghost', onclick: () => app.set('compare', null) }, 'Done (Esc)'))
  }
  app.on('change:compare', render)
  render()
}
