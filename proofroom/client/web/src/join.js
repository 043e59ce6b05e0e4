// Who this page is: a role link is a door, not a person. Opening one asks for a name (and
// an optional email) once, joins (POST /api/join), and remembers the personal token in this
// browser, keyed by the session and the link, so that a reload or the same link again is the
// same person. The link's token then leaves the address bar (nothing in the URL to leak).
import { Api, ApiError } from './api.js'
import { byId } from './dom.js'

/** Where a session's personal tokens are kept: `{ current, links: { [linkKey]: token } }`. */
const keyOf = (sessionId) => `proofroom:people:${sessionId}`

function load (sessionId) {
  try {
    const value = JSON.parse(localStorage.getItem(keyOf(sessionId)) || 'null')
    if (value && typeof value === 'object') return { current: value.current || null, links: value.links || {} }
  } catch (err) {
    // Storage may be disabled (private mode): this tab then asks again after a reload.
  }
  return { current: null, links: {} }
}

function save (sessionId, value) {
  try {
    localStorage.setItem(keyOf(sessionId), JSON.stringify(value))
  } catch (err) {
    // As above: the person is still joined for this page.
  }
}

/** A short, non-reversible key for a link token (storage never holds the link itself). */
export function linkKey (token) {
  let h1 = 0xdeadbeef
  let h2 = 0x41c6ce57
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i)
    h1 = Math.imul(h1 ^ c, 2654435761)
    h2 = Math.imul(h2 ^ c, 1597334677)
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  return (h2 >>> 0).toString(16).padStart(8, '0') + (h1 >>> 0).toString(16).padStart(8, '0')
}

/** The admin token the producer's dashboard keeps in this tab (producer.js ADMIN_KEY). */
function sessionAdminToken () {
  try { return sessionStorage.getItem('proofroom:admin') } catch (_err) { return null }
}

/** The address without its token: what stays in the bar and the history. */
function forgetUrlToken (sessionId) {
  history.replaceState(history.state, '', `/s/${encodeURIComponent(sessionId)}${location.hash}`)
}

/**
 * Resolve this page's person: `{ token, me }` (me is /api/whoami's answer), asking for a
 * name first when the URL holds a role link. Throws ApiError when no token works.
 */
export async function resolvePerson (sessionId) {
  const urlToken = new URLSearchParams(location.search).get('token')
  const stored = load(sessionId)
  if (!urlToken) {
    // Opened from the producer's dashboard in this tab: its admin token, never in a URL.
    const admin = stored.current ? null : sessionAdminToken()
    if (admin) return { token: admin, me: await new Api(admin).get('/api/whoami') }
    if (!stored.current) return null
    return { token: stored.current, me: await new Api(stored.current).get('/api/whoami') }
  }
  const key = linkKey(urlToken)
  const remembered = stored.links[key]
  if (remembered) {
    try {
      const me = await new Api(remembered).get('/api/whoami')
      save(sessionId, { ...stored, current: remembered })
      forgetUrlToken(sessionId)
      return { token: remembered, me }
    } catch (err) {
      if (!(err instanceof ApiError) || err.status === 0) throw err
      delete stored.links[key] // that person's link ended; the link itself decides below
    }
  }
  // What the token is, without acting with it (a link's token is refused everywhere else).
  const seen = await new Api(urlToken).get('/api/join')
  if (!seen.link) return { token: urlToken, me: await new Api(urlToken).get('/api/whoami') }
  const joined = await askAndJoin(new Api(urlToken))
  stored.links[key] = joined.token
  save(sessionId, { current: joined.token, links: stored.links })
  forgetUrlToken(sessionId)
  return { token: joined.token, me: await new Api(joined.token).get('/api/whoami') }
}

/** Show the name form until the server accepts a join; the server's answer. */
function askAndJoin (linkApi) {
  const form = byId('join')
  const name = byId('join-name')
  const email = byId('join-email')
  const error = byId('join-error')
  const submit = form.querySelector('button[type=submit]')
  document.body.dataset.state = 'joining'
  form.hidden = false
  name.focus()
  return new Promise((resolve) => {
    form.addEventListener('submit', async (event) => {
      event.preventDefault()
      if (!name.value.trim()) return name.focus()
      submit.disabled = true
      error.hidden = true
      const body = { name: name.value.trim() }
      if (email.value.trim()) body.email = email.value.trim()
      try {
        const joined = await linkApi.post('/api/join', body)
        form.hidden = true
        document.body.dataset.state = 'loading'
        resolve(joined)
      } catch (err) {
        error.textContent = err.message
        error.hidden = false
        submit.disabled = false
      }
    })
  })
}
