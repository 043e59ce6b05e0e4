// The Share panel (owners): invite links per role, locked regions, and the export of the
// approved result. Endpoints a server does not have yet hide their controls.
import { h, replace, ago } from '../dom.js'
import { isMissingEndpoint } from '../api.js'

const ROLES = ['viewer', 'commenter', 'editor', 'approver', 'owner']
const EXPIRY = [['', 'Never expires'], ['86400', 'Expires in 1 day'], ['604800', 'Expires in 7 days'], ['2592000', 'Expires in 30 days']]

export function mountSharePanel (root, app) {
  const { api } = app
  const base = `/api/sessions/${app.session.id}`

  // -- invites ------------------------------------------------------------------------------
  const role = h('select', { 'aria-label': 'Role' }, ROLES.map((r) => h('option', { value: r, selected: r === 'commenter' }, r)))
  const name = h('input', { type: 'text', maxlength: 80, placeholder: 'Name (e.g. Ana, client)', 'aria-label': 'Invitee name', required: true })
  const expiry = h('select', { 'aria-label': 'Expiry' }, EXPIRY.map(([v, label]) => h('option', { value: v }, label)))
  const made = h('div', { class: 'made-link', hidden: true })
  const invites = h('ul', { class: 'invites', 'aria-label': 'Invites' })
  const form = h('form', { class: 'invite-form', onsubmit: (e) => { e.preventDefault(); createInvite() } },
    h('div', { class: 'grid2' }, role, expiry), name,
    h('button', { type: 'submit', class: 'primary' }, 'Create invite link'))

  async function createInvite () {
    if (!name.value.trim()) return name.focus()
    try {
      const body = { role: role.value, name: name.value.trim() }
      if (expiry.value) body.expires_in = Number(expiry.value)
      const reply = await api.post(`${base}/invites`, body)
      const link = h('input', { type: 'text', readonly: true, value: reply.url, 'aria-label': 'Invite link' })
      replace(made,
        h('p', {}, `Link for ${body.name} (${body.role}). It is shown once: copy it now.`),
        h('div', { class: 'with-button' }, link,
          h('button', { type: 'button', onclick: () => copy(link) }, 'Copy')))
      made.hidden = false
      name.value = ''
      loadInvites()
    } catch (err) {
      app.toast(err.message, 'error')
    }
  }

  async function copy (input) {
    input.select()
    try {
      await navigator.clipboard.writeText(input.value)
      app.toast('Link copied.')
    } catch (err) {
      app.toast('Press Ctrl+C (⌘C) to copy the selected link.')
    }
  }

  async function loadInvites () {
    try {
      const { invites: all } = await api.get(`${base}/invites`)
      replace(invites, all.slice().reverse().map((inv) => {
        const revoke = h('button', { type: 'button', class: 'link danger' }, 'Revoke')
        revoke.addEventListener('click', async () => {
          if (revoke.dataset.confirm !== '1') {
            revoke.dataset.confirm = '1'
            revoke.textContent = 'Revoke: sure?'
            return
          }
          try {
            await api.del(`${base}/invites/${encodeURIComponent(inv.id)}`)
            loadInvites()
          } catch (err) {
            app.toast(err.message, 'error')
          }
        })
        const expired = inv.expires_at && inv.expires_at < Date.now() / 1000
        return h('li', { class: inv.revoked_at || expired ? 'gone' : null },
          h('span', { class: 'person-name' }, inv.name),
          h('span', { class: `badge role-${inv.role}` }, inv.role),
          h('span', { class: 'muted' }, inv.revoked_at ? 'revoked' : expired ? 'expired' : ago(inv.created_at)),
          inv.revoked_at || expired ? null : revoke)
      }))
    } catch (err) {
      replace(invites, h('li', { class: 'error' }, err.message))
    }
  }

  // -- locks --------------------------------------------------------------------------------
  const lockList = h('ul', { class: 'locks' })
  const lockSection = h('section', {},
    h('h2', {}, 'Locked regions'),
    h('p', { class: 'muted' }, 'No fix changes a locked region. Press L and drag on the image to lock one.'),
    h('button', { type: 'button', dataset: { tool: 'lock' }, onclick: () => app.set('tool', 'lock') }, 'Draw a lock (L)'),
    lockList)

  async function saveLocks (locks) {
    try {
      await api.put(`${base}/locks`, { locks })
    } catch (err) {
      if (isMissingEndpoint(err)) {
        lockSection.hidden = true
        app.emit('locks-unavailable')
        app.toast('Locks are not available on this server yet.')
      } else app.toast(err.message, 'error')
    }
  }

  function renderLocks () {
    const locks = app.store.metaInfo().locks
    replace(lockList, locks.map((box, i) => h('li', {},
      h('span', {}, `${box[2]}×${box[3]} px at ${box[0]}, ${box[1]}`),
      h('button', { type: 'button', class: 'link', onclick: () => app.view.reveal(box) }, 'Show'),
      h('button', { type: 'button', class: 'link danger', onclick: () => saveLocks(locks.filter((_, j) => j !== i)) }, 'Unlock'))))
  }

  // -- approvals ----------------------------------------------------------------------------
  const approvals = h('input', {
    type: 'number',
    min: 1,
    max: 20,
    step: 1,
    required: true,
    value: String(app.session.required_approvals || 1),
    'aria-label': 'Approvals a version needs',
    class: 'approvals-input'
  })
  const approvalsForm = h('form', { class: 'with-button approvals', novalidate: true, onsubmit: (e) => { e.preventDefault(); saveApprovals() } },
    approvals, h('button', { type: 'submit' }, 'Save'))
  const approvalsSection = h('section', {},
    h('h2', {}, 'Approvals'),
    h('p', { class: 'muted' }, 'How many approvers must approve a version before it counts as approved.'),
    approvalsForm)

  async function saveApprovals () {
    const wanted = Number(approvals.value)
    if (!approvals.checkValidity() || !Number.isInteger(wanted)) {
      app.toast('Approvals: a whole number from 1 to 20.', 'error')
      return approvals.focus()
    }
    try {
      const reply = await api.json('PATCH', `${base}/settings`, { required_approvals: wanted })
      app.session.required_approvals = reply.required_approvals
      const changed = reply.changed?.length ? ` (${reply.changed.length} version states changed)` : ''
      app.toast(`A version now needs ${wanted} approval${wanted === 1 ? '' : 's'}${changed}.`)
    } catch (err) {
      if (isMissingEndpoint(err)) {
        approvalsSection.hidden = true
        app.toast('Changing the approvals is not available on this server yet.')
      } else app.toast(err.message, 'error')
    }
  }

  // -- export -------------------------------------------------------------------------------
  const exportButton = h('button', { type: 'button', class: 'primary', onclick: exportPng }, 'Export approved PNG')
  const exportSection = h('section', {},
    h('h2', {}, 'Export'),
    h('p', { class: 'muted' }, 'The image with every approved version, with provenance in the PNG.'),
    exportButton)

  async function exportPng () {
    exportButton.disabled = true
    try {
      const response = await api.request('GET', `${base}/export.png`)
      const url = URL.createObjectURL(await response.blob())
      const a = h('a', { href: url, download: `${app.session.title || 'proofroom'}.png` })
      document.body.append(a)
      a.click()
      a.remove()
      setTimeout(() => URL.revokeObjectURL(url), 10000)
    } catch (err) {
      if (isMissingEndpoint(err)) {
        exportSection.hidden = true
        app.toast('Export is not available on this server yet.')
      } else app.toast(err.message, 'error')
    } finally {
      exportButton.disabled = false
    }
  }

  root.append(
    h('section', {}, h('h2', {}, 'Invite people'), form, made, h('h3', {}, 'Invites'), invites),
    approvalsSection,
    lockSection,
    exportSection)
  app.store.on('meta', renderLocks)
  renderLocks()
  loadInvites()
  return {
    addLock: (box) => saveLocks([...app.store.metaInfo().locks, box])
  }
}
