// @mentions: text stays plain text in the document ("@Ana (client) the sky..."); rendering
// highlights the names of known participants, and a composer suggests them after "@".
import { h } from './dom.js'

/** Text as DOM nodes, with @Name of every known name wrapped in a highlighted span. */
export function renderText (text, names, myName) {
  const sorted = [...names].filter(Boolean).sort((a, b) => b.length - a.length)
  const frag = document.createDocumentFragment()
  let rest = text
  while (rest) {
    const at = rest.indexOf('@')
    if (at < 0) break
    const name = sorted.find((n) => rest.startsWith(n, at + 1))
    if (!name) {
      frag.append(rest.slice(0, at + 1))
      rest = rest.slice(at + 1)
      continue
    }
    frag.append(rest.slice(0, at))
    frag.append(h('span', { class: name === myName ? 'mention me' : 'mention' }, '@' + name))
    rest = rest.slice(at + 1 + name.length)
  }
  if (rest) frag.append(rest)
  return frag
}

/** Whether `text` mentions `name`. */
export function mentions (text, name) {
  return Boolean(name) && text.includes('@' + name)
}

/**
 * Suggest names while typing "@..." in `input`; `names()` gives the candidates.
 * Arrow keys move, Enter or Tab picks, Escape closes. While the list is open its keys are
 * the list's alone: they run before the input's other handlers (a capturing listener on
 * the input itself), so Enter picks a name and never sends the half-typed text.
 */
export function attachMentions (input, names) {
  const list = h('ul', { class: 'mention-list', role: 'listbox', 'aria-label': 'People to mention', hidden: true })
  input.after(list)
  let options = []
  let active = 0
  let start = -1

  const close = () => {
    list.hidden = true
    options = []
    start = -1
  }
  const pick = (name) => {
    const before = input.value.slice(0, start)
    const after = input.value.slice(input.selectionStart)
    input.value = `${before}@${name} ${after}`
    const caret = before.length + name.length + 2
    input.setSelectionRange(caret, caret)
    close()
    input.focus()
  }
  const show = () => {
    list.replaceChildren(...options.map((name, i) => h('li', {
      role: 'option',
      class: i === active ? 'active' : null,
      'aria-selected': i === active ? 'true' : 'false',
      onpointerdown: (e) => {
        e.preventDefault()
        pick(name)
      }
    }, '@' + name)))
    list.hidden = options.length === 0
    if (!list.hidden) place()
  }
  // Below the field where the page has room for the list, above it otherwise: never over
  // the text being typed.
  const place = () => {
    const field = input.getBoundingClientRect()
    const room = (input.closest('.stage') || document.documentElement).getBoundingClientRect()
    const below = Math.min(room.bottom, window.innerHeight) - field.bottom
    const height = list.offsetHeight
    list.style.left = `${input.offsetLeft}px`
    if (below >= height + 4 || field.top - Math.max(room.top, 0) < height + 4) {
      list.style.top = `${input.offsetTop + input.offsetHeight + 2}px`
      list.style.bottom = ''
    } else {
      list.style.top = `${input.offsetTop - height - 2}px`
      list.style.bottom = ''
    }
  }

  input.addEventListener('input', () => {
    const upto = input.value.slice(0, input.selectionStart)
    const match = /(^|\s)@([^@\n]{0,40})$/.exec(upto)
    if (!match) return close()
    start = upto.length - match[2].length - 1
    const typed = match[2].toLowerCase()
    options = names().filter((n) => n.toLowerCase().startsWith(typed)).slice(0, 6)
    active = 0
    show()
  })
  input.addEventListener('keydown', (e) => {
    if (list.hidden || e.isComposing) return
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      active = (active + (e.key === 'ArrowDown' ? 1 : options.length - 1)) % options.length
      show()
    } else if (e.key === 'Enter' || e.key === 'Tab') {
      pick(options[active])
    } else if (e.key === 'Escape') {
      close()
    } else return
    e.preventDefault()
    e.stopImmediatePropagation()
  }, { capture: true })
  input.addEventListener('blur', () => setTimeout(close, 100))
  return { get open () { return !list.hidden } }
}
