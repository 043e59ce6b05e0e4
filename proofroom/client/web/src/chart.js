// A small bar chart of approvals over time, as inline SVG built with DOM calls (no
// library, and nothing a Content-Security-Policy would block).
import { svg } from './dom.js'

const HOUR = 3600
const DAY = 24 * HOUR

/** Bucket Unix times by hour (a short span) or by day; returns [{start, count}].
 * At least a day of hours (or two weeks of days) is shown, so one approval is one bar. */
export function bucketize (times, now = Date.now() / 1000) {
  if (times.length === 0) return { size: DAY, buckets: [] }
  const first = Math.min(...times)
  const size = now - first <= 2 * DAY ? HOUR : DAY
  const offset = size === DAY ? new Date().getTimezoneOffset() * 60 : 0 // local midnights
  const floor = (t) => Math.floor((t - offset) / size) * size + offset
  const start = Math.min(floor(first), floor(now) - (size === HOUR ? 23 : 13) * size)
  const count = Math.min(400, Math.floor((floor(now) - start) / size) + 1)
  const buckets = Array.from({ length: count }, (_, i) => ({ start: start + i * size, count: 0 }))
  for (const t of times) {
    const i = Math.floor((floor(t) - start) / size)
    if (buckets[i]) buckets[i].count++
  }
  return { size, buckets }
}

export function approvalsChart (times, { width = 640, height = 150 } = {}) {
  const { size, buckets } = bucketize(times)
  const pad = { l: 28, r: 8, t: 10, b: 22 }
  const root = svg('svg', {
    class: 'chart',
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': `Approvals per ${size === DAY ? 'day' : 'hour'}: ${times.length} in all`
  })
  if (buckets.length === 0) {
    root.append(svg('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'chart-empty' }, 'No approvals yet'))
    return root
  }
  const max = Math.max(1, ...buckets.map((b) => b.count))
  const innerW = width - pad.l - pad.r
  const innerH = height - pad.t - pad.b
  const step = innerW / buckets.length
  const y = (v) => pad.t + innerH - (v / max) * innerH
  root.append(
    svg('line', { x1: pad.l, x2: width - pad.r, y1: y(0), y2: y(0), class: 'axis' }),
    svg('text', { x: pad.l - 4, y: y(max) + 4, 'text-anchor': 'end', class: 'tick' }, String(max)),
    svg('text', { x: pad.l - 4, y: y(0), 'text-anchor': 'end', class: 'tick' }, '0'))
  const fmt = (t) => size === DAY
    ? new Date(t * 1000).toLocaleDateString([], { month: 'short', day: 'numeric' })
    : new Date(t * 1000).toLocaleString([], { weekday: 'short', hour: '2-digit', minute: '2-digit' })
  buckets.forEach((b, i) => {
    const label = fmt(b.start)
    const barH = y(0) - y(b.count)
    root.append(svg('rect', {
      x: pad.l + i * step + step * 0.15,
      y: y(b.count),
      width: Math.max(1, step * 0.7),
      height: Math.max(b.count ? 1 : 0, barH),
      class: 'bar',
      'data-count': b.count
    }, svg('title', {}, `${label}: ${b.count} approval${b.count === 1 ? '' : 's'}`)))
  })
  root.append(
    svg('text', { x: pad.l, y: height - 6, class: 'tick' }, fmt(buckets[0].start)),
    svg('text', { x: width - pad.r, y: height - 6, 'text-anchor': 'end', class: 'tick' }, fmt(buckets[buckets.length - 1].start)))
  return root
}
