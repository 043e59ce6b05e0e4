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
 * Arrow keys move, Enter or Tab picks, Escape closes.
 */
export function attachMentions (input, names) {
  const list = h('ul', { class: 'mention-list', role: 'listbox', hidden: true })
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
    if (list.hidden) return
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      active = (active + (e.key === 'ArrowDown' ? 1 : options.length - 1)) % options.length
      show()
    } else if (e.key === 'Enter' || e.key === 'Tab') {
      pick(options[active])
    } else if (e.key === 'Escape') {
      close()
    } else return
    e.preventDefault()
    e.stopPropagation()
  })
  input.addEventListener('blur', () => setTimeout(close, 100))
}
