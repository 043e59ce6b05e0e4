// DOM helpers. Every string child becomes a text node: user text is never parsed as HTML.

/** Create an element: `h('button', {class: 'x', onclick: fn}, 'label', child)`. */
export function h (tag, props, ...children) {
  return build(document.createElement(tag), props, children)
}

const SVG_NS = 'http://www.w3.org/2000/svg'

/** Create an SVG element; props are attributes. */
export function svg (tag, props, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children)
}

function build (el, props, children) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue
    if (key === 'class') el.setAttribute('class', value)
    else if (key === 'text') el.textContent = value
    else if (key === 'dataset') Object.assign(el.dataset, value)
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value)
    else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'hidden') {
      el[key] = value
    } else el.setAttribute(key, value === true ? '' : String(value))
  }
  append(el, children)
  return el
}

function append (el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue
    el.append(child instanceof Node ? child : String(child))
  }
}

/** Replace an element's children. */
export function replace (el, ...children) {
  el.replaceChildren()
  append(el, children)
  return el
}

export function byId (id) {
  return document.getElementById(id)
}

/** "just now", "4 min ago", "2 h ago", or a date. */
export function ago (seconds) {
  if (!seconds) return ''
  const delta = Date.now() / 1000 - seconds
  if (delta < 45) return 'just now'
  if (delta < 3600) return `${Math.round(delta / 60)} min ago`
  if (delta < 86400) return `${Math.round(delta / 3600)} h ago`
  return new Date(seconds * 1000).toLocaleDateString()
}

/** A duration in seconds as "42 s", "12 min", "3.5 h" or "2.1 d". */
export function duration (seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '—'
  if (seconds < 60) return `${Math.round(seconds)} s`
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`
  return `${(seconds / 86400).toFixed(1)} d`
}

/** Whether a keyboard event comes from a place where typing text is expected. */
export function isTyping (event) {
  const el = event.target
  return el instanceof HTMLElement &&
    (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName))
}

/** A short random id with a prefix ("p_3f9a..."), as pins and comments need. */
export function newId (prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(8))
  return prefix + '_' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

/**
 * Make `parent`'s children match `items` (keyed by `keyOf`), creating, updating, moving
 * and removing elements only where something changed: an element that stays keeps its
 * focus, its selection, a press in progress and whatever is typed into it.
 */
export function keyed (parent, items, keyOf, create, update) {
  const old = new Map()
  for (const child of parent.children) old.set(child.dataset.key, child)
  let at = parent.firstElementChild
  for (const item of items) {
    const key = String(keyOf(item))
    let el = old.get(key)
    if (el) old.delete(key)
    else {
      el = create(item)
      el.dataset.key = key
    }
    update(el, item)
    if (el !== at) parent.insertBefore(el, at)
    else at = at.nextElementSibling
  }
  for (const el of old.values()) el.remove()
}

/** Set text / an attribute only when it differs (no needless style or layout work). */
export function setText (el, value) {
  if (el.textContent !== value) el.textContent = value
}
export function setAttr (el, name, value) {
  if (value === null || value === undefined || value === false) {
    if (el.hasAttribute(name)) el.removeAttribute(name)
  } else if (el.getAttribute(name) !== String(value)) el.setAttribute(name, String(value))
}
