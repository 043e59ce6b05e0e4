// The live document: a Y.Doc synced by the official y-websocket provider, with the
// connection state the UI shows, the server's permission-denied reasons, and no retries
// after a close that reconnecting cannot fix (a bad link, a revoked invite, no session).
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import * as authProtocol from 'y-protocols/auth'
import { Emitter } from './events.js'
import { CLOSE, MESSAGE, PERMANENT_CLOSE } from './contract.js'

const WHY = {
  [CLOSE.UNAUTHORIZED]: 'This link is not valid, or it has expired. Ask the session owner for a new one.',
  [CLOSE.FORBIDDEN]: 'This link was revoked, or it belongs to another session.',
  [CLOSE.NOT_FOUND]: 'This session does not exist (it may have been deleted).',
  [CLOSE.BAD_MESSAGE]: 'The server refused a malformed message from this page. Reload to rejoin.',
  [CLOSE.DOC_TOO_LARGE]: 'The session document reached its size limit.',
  [CLOSE.RATE_LIMITED]: 'Too many changes at once; reconnecting…',
  [CLOSE.ROOM_FULL]: 'The session is full; retrying…',
  [CLOSE.TOO_SLOW]: 'The connection could not keep up; reconnecting…',
  [CLOSE.INTERNAL_ERROR]: 'The server could not store a change; reconnecting…'
}

/** Why the server closed the connection, in words for a person. */
export function closeReason (code, reason) {
  return WHY[code] || reason || `The connection closed (${code}).`
}

/**
 * States: "connecting" (first time), "synced", "reconnecting" (lost, retrying),
 * "offline" (the browser has no network; edits are kept), "closed" (permanent, see `why`).
 */
export class Connection extends Emitter {
  constructor ({ sessionId, token }) {
    super()
    this.doc = new Y.Doc()
    this.state = 'connecting'
    this.why = ''
    this.everSynced = false
    this.stale = false
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
    this.provider = new WebsocketProvider(`${scheme}://${location.host}/ws`, encodeURIComponent(sessionId), this.doc, {
      connect: false,
      params: { token },
      // Tabs of one browser may hold different roles: never pass updates between them.
      disableBc: true,
      maxBackoffTime: 5000,
      shouldReconnect: (event) => !PERMANENT_CLOSE.has(event.code)
    })
    // The default handler only logs; the reasons are shown to the person instead.
    this.provider.messageHandlers[MESSAGE.AUTH] = (_encoder, decoder) => {
      authProtocol.readAuthMessage(decoder, this.doc, (_doc, reason) => {
        this.emit('denied', reason)
        this._goStale(reason)
      })
    }
    this.provider.on('status', ({ status }) => {
      if (this.state === 'closed' || this.state === 'offline') return
      if (status !== 'connected') this._set(this.everSynced ? 'reconnecting' : 'connecting')
    })
    this.provider.on('sync', (synced) => {
      if (!synced) return
      this.everSynced = true
      this._set('synced')
    })
    this.provider.on('connection-close', (event) => {
      if (event && event.code === CLOSE.OUT_OF_SYNC) this._goStale(event.reason)
      if (event && !PERMANENT_CLOSE.has(event.code) && event.code !== 1000 && event.code !== 1006) {
        this.why = closeReason(event.code, event.reason)
      }
    })
    this.provider.on('closed', ({ code, reason }) => {
      this.why = closeReason(code, reason)
      this._set('closed')
    })
    // A lost network is noticed at once (not after the 30 s silence timeout), and edits
    // made meanwhile stay in the document until the connection is back.
    window.addEventListener('offline', () => {
      if (this.state === 'closed') return
      this.provider.disconnect()
      this._set('offline')
    })
    window.addEventListener('online', () => {
      if (this.state !== 'offline') return
      this._set('reconnecting')
      this.provider.connect()
    })
  }

  get awareness () {
    return this.provider.awareness
  }

  start () {
    if (navigator.onLine === false) this._set('offline')
    else this.provider.connect()
  }

  /**
   * The server refused a change this copy holds. A CRDT cannot take a change back, and
   * anything built on it would be refused too (the server closes with OUT_OF_SYNC), so
   * this copy stops syncing and the page starts over from the server's ('stale').
   */
  _goStale (reason) {
    if (this.stale) return
    this.stale = true
    this.provider.shouldConnect = false
    this.provider.disconnect()
    this.emit('stale', reason || 'a change was refused')
  }

  _set (state) {
    if (state === this.state) return
    if (state === 'synced') this.why = ''
    this.state = state
    this.emit('state', state)
  }
}
