// Who is here: a participant list with roles, this person's name and whether others may
// follow their view, and a Follow button for each presenter who allows it.
import { h, replace } from '../dom.js'
import { perFrame } from '../events.js'

const ROLE_LABEL = { viewer: 'Viewer', commenter: 'Commenter', editor: 'Editor', approver: 'Approver', owner: 'Owner' }

export function mountPeople (root, avatars, app) {
  const { presence } = app
  const followable = h('input', {
    type: 'checkbox',
    onchange: (e) => {
      presence.setFollowable(e.target.checked)
      app.toast(e.target.checked ? 'Others can now follow your view.' : 'Nobody can follow your view now.')
    }
  })
  const list = h('ul', { class: 'people', 'aria-label': 'Participants' })
  root.append(
    h('h2', {}, 'You'),
    // The name joined with: others see it on pins, replies and decisions (it is not editable).
    h('p', { class: 'person-name', id: 'me-name' }, presence.name),
    h('label', { class: 'check' }, followable, 'Let others follow my view (present)'),
    h('p', { class: 'muted' }, `You joined as ${ROLE_LABEL[app.me.role] || app.me.role}.`),
    h('h2', {}, 'Here now'),
    list)

  const narrow = matchMedia('(max-width: 900px)') // the width where the sidebar is a sheet
  const render = perFrame(() => {
    const peers = presence.peers()
    const following = presence.following
    replace(list,
      h('li', { class: 'person me' }, dot(presence.colour), h('span', { class: 'person-name' }, `${presence.name} (you)`), roleBadge(app.me.role)),
      peers.map((p) => h('li', { class: 'person', dataset: { clientId: p.clientId } },
        dot(p.colour),
        h('span', { class: 'person-name' }, p.name),
        roleBadge(p.role),
        p.follow && p.follow === app.me.userId ? h('span', { class: 'muted' }, 'follows you') : null,
        p.followable
          ? h('button', {
            type: 'button',
            class: following === p.clientId ? 'primary' : '',
            'aria-pressed': String(following === p.clientId),
            onclick: () => presence.follow(following === p.clientId ? null : p.clientId)
          }, following === p.clientId ? 'Following' : 'Follow')
          : null)))
    const everyone = [{ name: presence.name, colour: presence.colour, role: app.me.role, me: true }, ...peers]
    // The top bar has room for a few faces; the rest are counted, never silently dropped.
    const room = narrow.matches ? 3 : 8
    const shown = everyone.length > room ? everyone.slice(0, room - 1) : everyone
    const rest = everyone.slice(shown.length)
    replace(avatars, shown.map(avatar), rest.length
      ? h('button', {
        type: 'button',
        class: 'avatar more',
        title: rest.map((p) => p.name).join(', '),
        'aria-label': `${rest.length} more: ${rest.map((p) => p.name).join(', ')}`,
        onclick: () => app.showTab('people')
      }, `+${rest.length}`)
      : null)
  })
  narrow.addEventListener('change', render)

  presence.on('peers', render)
  presence.on('names', render)
  presence.on('follow', (peer) => {
    render()
    if (peer) app.toast(`Following ${peer.name}. Move the view to stop.`)
  })
  app.on('user-moved-view', () => {
    if (presence.following !== null) {
      presence.follow(null)
      app.toast('Stopped following.')
    }
  })
  render()
}

function avatar (p) {
  const el = h('span', {
    class: 'avatar',
    title: `${p.name} · ${ROLE_LABEL[p.role] || p.role}${p.me ? ' (you)' : ''}`,
    'aria-label': `${p.name}, ${p.role}`
  }, initials(p.name))
  el.style.setProperty('--c', p.colour)
  return el
}

function dot (colour) {
  const el = h('span', { class: 'dot', 'aria-hidden': 'true' })
  el.style.setProperty('--c', colour)
  return el
}

function roleBadge (role) {
  return h('span', { class: `badge role-${role}` }, ROLE_LABEL[role] || role)
}

/** "Ana (client)" -> "AC": the first letter of the first two words that have one. */
function initials (name) {
  const words = name.split(/\s+/).map((w) => w.match(/\p{L}|\p{N}/u)).filter(Boolean)
  return words.slice(0, 2).map((m) => m[0].toUpperCase()).join('') || '?'
}
