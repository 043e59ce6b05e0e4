// The tool bar: tools the role allows, and zoom. Tools a role may not use are not shown.
import { h, svg, replace } from './dom.js'

// Icons as SVG path data (24 px grid): no icon font, no emoji that a system may lack.
const ICONS = {
  hand: 'M8 13V5.5a1.5 1.5 0 0 1 3 0V12M11 11V4.5a1.5 1.5 0 0 1 3 0V12M14 11.5V6a1.5 1.5 0 0 1 3 0v8a7 7 0 0 1-7 7h-.5a6 6 0 0 1-5-2.7L2.8 15a1.6 1.6 0 0 1 2.6-1.9L8 16',
  pin: 'M12 21s-6-5.6-6-11a6 6 0 0 1 12 0c0 5.4-6 11-6 11zM12 12.5a2.5 2.5 0 1 0 0-5 2.5 2.5 0 0 0 0 5z',
  brush: 'M14.5 4.5l5 5L10 19l-5 1 1-5 8.5-10.5zM12.5 6.5l5 5',
  erase: 'M20 20H9l-5-5 10-10 7 7-7 7M7 12l6 6',
  box: 'M4 4h16v16H4zM4 9h16M9 4v16',
  lock: 'M6 11h12v10H6zM8.5 11V7.5a3.5 3.5 0 0 1 7 0V11'
}

export const TOOLS = [
  { tool: 'hand', label: 'Pan', key: 'H', cap: null },
  { tool: 'pin', label: 'Pin or region', key: 'C', cap: 'comment' },
  { tool: 'brush', label: 'Paint mask', key: 'B', cap: 'edit' },
  { tool: 'erase', label: 'Erase mask', key: 'E', cap: 'edit' },
  { tool: 'box', label: 'Box mask', key: 'X', cap: 'edit' },
  { tool: 'lock', label: 'Lock a region', key: 'L', cap: 'administer' }
]

function icon (name) {
  return svg('svg', { viewBox: '0 0 24 24', 'aria-hidden': 'true' }, svg('path', { d: ICONS[name] }))
}

export function mountToolbar (root, app) {
  const { view } = app
  const zoomLabel = h('button', { type: 'button', class: 'zoom-label', title: 'Fit (0)', onclick: () => { view.fit(); app.emit('user-moved-view') } })
  const tools = TOOLS.filter((t) => !t.cap || app.caps[t.cap])
  const buttons = tools.map((t) => h('button', {
    type: 'button',
    class: 'tool',
    dataset: { tool: t.tool },
    title: `${t.label} (${t.key})`,
    'aria-label': `${t.label} (${t.key})`,
    onclick: () => app.set('tool', t.tool)
  }, icon(t.tool)))
  const zoom = (f) => { view.zoomAt(f); app.emit('user-moved-view') }
  replace(root,
    h('div', { class: 'tool-group', role: 'group', 'aria-label': 'Tools' }, buttons),
    h('div', { class: 'tool-group', role: 'group', 'aria-label': 'Zoom' },
      h('button', { type: 'button', class: 'tool', title: 'Zoom out (-)', 'aria-label': 'Zoom out', onclick: () => zoom(1 / 1.25) }, '−'),
      zoomLabel,
      h('button', { type: 'button', class: 'tool', title: 'Zoom in (+)', 'aria-label': 'Zoom in', onclick: () => zoom(1.25) }, '+')))
  const render = () => {
    for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.tool === app.state.tool))
    zoomLabel.textContent = `${Math.round(view.scale * 100)}%`
  }
  app.on('change:tool', render)
  view.on('change', render)
  render()
}
