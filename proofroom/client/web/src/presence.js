// Presence over Yjs awareness: this participant's name, colour, cursor and viewport, the
// others' states, names for user ids, and following a presenter who allows it.
import { Emitter, throttle } from './events.js'
import { F } from './contract.js'

const A = F.Awareness
const PALETTE = ['#ff6b6b', '#4dabf7', '#51cf66', '#fcc419', '#cc5de8', '#ff922b', '#20c997', '#f06595', '#94d82d', '#748ffc']
const COLOUR = /^#[0-9a-fA-F]{6}$/

function storage (key, value) {
  try {
    if (value === undefined) return JSON.parse(localStorage.getItem(key) || 'null')
    localStorage.setItem(key, JSON.stringify(value))
  } catch (err) {
    // Storage may be disabled (private mode): names are then remembered for this tab only.
  }
  return null
}

export class Presence extends Emitter {
  constructor (awareness, me, sessionId) {
    super()
    this.awareness = awareness
    this.me = me
    this.following = null // client id of the presenter we follow
    this._namesKey = `proofroom:names:${sessionId}`
    this.names = new Map(Object.entries(storage(this._namesKey) || {}))
    // The name this person joined with: the server stamps it on their presence anyway.
    const name = me.name
    this.names.set(me.userId, name)
    const colour = PALETTE[awareness.clientID % PALETTE.length]
    // When this page joined: of two people showing one colour, the later one changes.
    this._joined = Date.now()
    awareness.setLocalState({
      [A.USER]: { name, colour },
      [A.CURSOR]: null,
      [A.VIEWPORT]: null,
      [A.FOLLOW]: null,
      followable: false,
      joined: this._joined
    })
    this.setCursor = throttle((point) => awareness.setLocalStateField(A.CURSOR, point), 50)
    this.setViewport = throttle((vp) => awareness.setLocalStateField(A.VIEWPORT, vp), 100)
    awareness.on('change', () => this._changed())
  }

  get local () {
    return this.awareness.getLocalState() || {}
  }

  get name () {
    return this.local[A.USER]?.name || this.me.name
  }

  get colour () {
    return this.local[A.USER]?.colour
  }

  setName (name) {
    name = name.trim().slice(0, 80)
    if (!name) return
    storage('proofroom:name', name)
    this.names.set(this.me.userId, name)
    this.awareness.setLocalStateField(A.USER, { ...this.local[A.USER], name })
    this.emit('names')
  }

  setFollowable (on) {
    this.awareness.setLocalStateField('followable', Boolean(on))
  }

  /** Everyone else present, with a safe colour and a name. */
  peers () {
    const out = []
    for (const [clientId, state] of this.awareness.getStates()) {
      if (clientId === this.awareness.clientID || !state) continue
      const user = state[A.USER] || {}
      const cursor = state[A.CURSOR]
      out.push({
        clientId,
        id: user.id,
        name: String(user.name || 'Someone').slice(0, 80),
        role: user.role || 'viewer',
        colour: COLOUR.test(user.colour) ? user.colour : PALETTE[clientId % PALETTE.length],
        cursor: Array.isArray(cursor) && cursor.length === 2 && cursor.every(Number.isFinite) ? cursor : null,
        viewport: state[A.VIEWPORT] || null,
        follow: state[A.FOLLOW] || null,
        followable: state.followable === true,
        // Someone whose client does not say when it joined counts as here first.
        joined: Number.isFinite(state.joined) ? state.joined : 0
      })
    }
    return out.sort((a, b) => a.name.localeCompare(b.name))
  }

  /** Names of participants who may not be here now ({user id: name}, from the server). */
  learn (names) {
    let learned = false
    for (const [id, name] of Object.entries(names || {})) {
      if (typeof name === 'string' && name && this.names.get(id) !== name) {
        this.names.set(id, name)
        learned = true
      }
    }
    if (learned) {
      storage(this._namesKey, Object.fromEntries(this.names))
      this.emit('names')
    }
  }

  /**
   * Keep this person's colour their own: if someone who was here first shows the same
   * colour, take the first one nobody shows (while the palette has one left).
   */
  _keepColourDistinct (peers) {
    const mine = this.colour
    const me = this.awareness.clientID
    const clash = peers.some((p) => p.colour === mine &&
      (p.joined < this._joined || (p.joined === this._joined && p.clientId < me)))
    if (!clash) return
    const shown = new Set(peers.map((p) => p.colour))
    const free = PALETTE.find((c) => !shown.has(c))
    if (free) this.awareness.setLocalStateField(A.USER, { ...this.local[A.USER], colour: free })
  }

  /** A display name for a user id: what they call themselves, or a short id. */
  nameOf (userId) {
    if (!userId) return 'Someone'
    return this.names.get(userId) || (userId === 'admin' ? 'Admin' : `User ${String(userId).slice(-4)}`)
  }

  /** Every name known in this session (for @mentions), this participant's last. */
  knownNames () {
    const mine = this.name
    return [...new Set([...this.names.values()])].filter((n) => n !== mine).sort().concat([mine])
  }

  follow (clientId) {
    this.following = clientId
    const peer = this.peers().find((p) => p.clientId === clientId)
    this.awareness.setLocalStateField(A.FOLLOW, peer ? peer.id : null)
    this.emit('follow', peer || null)
    if (peer) this._applyFollow(peer)
  }

  _changed () {
    let learned = false
    const peers = this.peers()
    this._keepColourDistinct(peers)
    for (const peer of peers) {
      if (peer.id && this.names.get(peer.id) !== peer.name) {
        this.names.set(peer.id, peer.name)
        learned = true
      }
    }
    if (learned) {
      storage(this._namesKey, Object.fromEntries(this.names))
      this.emit('names')
    }
    if (this.following !== null) {
      const leader = peers.find((p) => p.clientId === this.following)
      if (!leader || !leader.followable) this.follow(null)
      else this._applyFollow(leader)
    }
    this.emit('peers', peers)
  }

  _applyFollow (leader) {
    if (leader.viewport) this.emit('leader-viewport', leader.viewport)
  }
}
