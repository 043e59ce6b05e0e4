// The session document as plain snapshots for the UI, and the only place that writes it.
// Every write checks the role first: a viewer's page never changes its Y.Doc, so it never
// shows an edit the server would refuse.
import * as Y from 'yjs'
import { Emitter } from './events.js'
import { F, ROOTS, ORIGINAL_REVISION as ORIGINAL, can } from './contract.js'
import { newId } from './dom.js'

const P = F.Pin
const CM = F.Comment
const L = F.Layer
const J = F.Job
const M = F.Meta
const R = F.Revision

const now = () => Date.now() / 1000
const round2 = (v) => Math.round(v * 100) / 100
const plain = (v) => (v instanceof Y.AbstractType ? v.toJSON() : v)

export class DocStore extends Emitter {
  constructor (doc, { userId, role }) {
    super()
    this.doc = doc
    this.userId = userId
    this.canComment = can(role, 'comment')
    // Set when the server closed the connection for good: edits could never be sent.
    this.closed = false
    this.meta = doc.getMap(ROOTS.META)
    this.pins = doc.getMap(ROOTS.PINS)
    this.layers = doc.getArray(ROOTS.LAYERS)
    this.jobs = doc.getMap(ROOTS.JOBS)
    this.revisions = doc.getArray(ROOTS.REVISIONS)
    // Where a new pin goes: the revision shown and, on a clip, its frame (set by the room).
    this.pinContext = () => ({})
    this._pinCache = new Map()
    this._pinList = null
    this._layerList = null
    this._revisionList = null
    this.pins.observeDeep((events) => {
      const ids = new Set()
      for (const event of events) {
        if (event.target === this.pins) for (const key of event.keys.keys()) ids.add(key)
        else ids.add(String(event.path[0]))
      }
      for (const id of ids) this._pinCache.delete(id)
      this._pinList = null
      this.emit('pins', ids)
    })
    this.layers.observeDeep(() => {
      this._layerList = null
      this.emit('layers')
    })
    this.jobs.observeDeep(() => this.emit('jobs'))
    this.revisions.observeDeep(() => {
      this._revisionList = null
      this.emit('revisions')
    })
    this.meta.observeDeep(() => this.emit('meta'))
  }

  // -- reading ------------------------------------------------------------------------------

  metaInfo () {
    return {
      title: this.meta.get(M.TITLE),
      width: this.meta.get(M.WIDTH),
      height: this.meta.get(M.HEIGHT),
      base: this.meta.get(M.BASE),
      locks: (plain(this.meta.get(M.LOCKS)) || []).filter(isBox)
    }
  }

  pin (id) {
    if (this._pinCache.has(id)) return this._pinCache.get(id)
    const map = this.pins.get(id)
    const pin = map instanceof Y.Map ? readPin(id, map) : null
    if (pin) this._pinCache.set(id, pin)
    return pin
  }

  /** Every pin, oldest first, each with its number (1, 2, ...) in that order. */
  pinList () {
    if (this._pinList) return this._pinList
    const list = []
    for (const id of this.pins.keys()) {
      const pin = this.pin(id)
      if (pin) list.push(pin)
    }
    list.sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : 1))
    list.forEach((pin, i) => { pin.number = i + 1 })
    this._pinList = list
    return list
  }

  /** Layers in document order (the order versions were made), each numbered. */
  layerList () {
    if (this._layerList) return this._layerList
    this._layerList = this.layers.toArray()
      .filter((m) => m instanceof Y.Map)
      .map((m, i) => readLayer(m, i))
      .filter((l) => l.id && isBox(l.box))
    return this._layerList
  }

  /** The stack of revisions (v1 first); empty while the session has only its original. */
  revisionList () {
    if (this._revisionList) return this._revisionList
    this._revisionList = this.revisions.toArray()
      .filter((m) => m instanceof Y.Map)
      .map((m, i) => readRevision(m, i))
      .filter((r) => r.id)
    return this._revisionList
  }

  revision (id) {
    return this.revisionList().find((r) => r.id === id) || null
  }

  layer (id) {
    return this.layerList().find((l) => l.id === id) || null
  }

  jobList () {
    const out = []
    for (const [id, map] of this.jobs.entries()) {
      if (map instanceof Y.Map) out.push({ id, ...readJob(map) })
    }
    return out.sort((a, b) => (a.created_at || 0) - (b.created_at || 0))
  }

  /** The approved layers under `layer` (up to its parent), as the server composed it. */
  parentChain (layer) {
    if (!layer.parent) return []
    const chain = []
    for (const l of this.layerList()) {
      if (l.state === 'approved') chain.push(l)
      if (l.id === layer.parent) return chain
    }
    return chain
  }

  // -- writing ------------------------------------------------------------------------------

  /** Whether this page may write now; if not, says so (once per attempt) and writes nothing. */
  _writable () {
    if (this.canComment && !this.closed) return true
    this.emit('read-only', this.closed ? 'disconnected' : 'role')
    return false
  }

  /** Create an open pin (a point, or a region [x, y, w, h]); return its id. */
  addPin ({ x, y, text, region }) {
    if (!this._writable()) return null
    const id = newId('p')
    const pin = new Y.Map()
    pin.set(P.X, round2(x))
    pin.set(P.Y, round2(y))
    pin.set(P.AUTHOR, this.userId)
    pin.set(P.TEXT, text)
    pin.set(P.STATUS, 'open')
    pin.set(P.CREATED_AT, now())
    pin.set(P.THREAD, new Y.Array())
    if (region) pin.set(P.REGION, region.map(Math.round))
    const { revision, frame } = this.pinContext()
    if (revision && revision !== ORIGINAL) pin.set(P.REVISION, revision)
    if (Number.isInteger(frame)) pin.set(P.FRAME, frame)
    this.doc.transact(() => this.pins.set(id, pin))
    return id
  }

  reply (pinId, text) {
    if (!this._writable()) return null
    const thread = this.pins.get(pinId)?.get(P.THREAD)
    if (!(thread instanceof Y.Array)) return null
    const comment = new Y.Map()
    const id = newId('c')
    comment.set(CM.ID, id)
    comment.set(CM.AUTHOR, this.userId)
    comment.set(CM.TEXT, text)
    comment.set(CM.AT, now())
    thread.push([comment])
    return id
  }

  setStatus (pinId, status) {
    if (!this._writable()) return
    const pin = this.pins.get(pinId)
    if (!(pin instanceof Y.Map) || pin.get(P.AUTHOR) !== this.userId) return
    this.doc.transact(() => {
      pin.set(P.STATUS, status)
      pin.set(P.UPDATED_AT, now())
    })
  }

  /** Move one's own pin to image point (x, y); a region keeps its size and moves along. */
  movePin (pinId, x, y) {
    if (!this._writable()) return
    const pin = this.pins.get(pinId)
    if (!(pin instanceof Y.Map) || pin.get(P.AUTHOR) !== this.userId) return
    // Kept on the picture of the pin's own revision (an upscale is larger than the upload).
    const rev = this.revision(pin.get(P.REVISION) || ORIGINAL)
    const W = Number(rev ? rev.width : this.meta.get(M.WIDTH)) || Infinity
    const H = Number(rev ? rev.height : this.meta.get(M.HEIGHT)) || Infinity
    const nx = round2(Math.max(0, Math.min(W, x)))
    const ny = round2(Math.max(0, Math.min(H, y)))
    const region = plain(pin.get(P.REGION))
    this.doc.transact(() => {
      if (isBox(region)) {
        const [rx, ry, rw, rh] = region
        const left = Math.round(Math.max(0, Math.min(W - rw, rx + nx - Number(pin.get(P.X)))))
        const top = Math.round(Math.max(0, Math.min(H - rh, ry + ny - Number(pin.get(P.Y)))))
        pin.set(P.REGION, [left, top, rw, rh])
      }
      pin.set(P.X, nx)
      pin.set(P.Y, ny)
      pin.set(P.UPDATED_AT, now())
    })
  }

  /** On a clip: the range of frames one's own pin is about ([first, last]), or none. */
  setFrames (pinId, frames) {
    if (!this._writable()) return
    const pin = this.pins.get(pinId)
    if (!(pin instanceof Y.Map) || pin.get(P.AUTHOR) !== this.userId) return
    this.doc.transact(() => {
      if (frames) pin.set(P.FRAMES, [Math.round(frames[0]), Math.round(frames[1])])
      else pin.delete(P.FRAMES)
      pin.set(P.UPDATED_AT, now())
    })
  }

  editComment (pinId, commentId, changes) {
    if (!this._writable()) return
    const thread = this.pins.get(pinId)?.get(P.THREAD)
    if (!(thread instanceof Y.Array)) return
    const comment = thread.toArray().find((c) => c instanceof Y.Map && c.get(CM.ID) === commentId)
    if (!comment || comment.get(CM.AUTHOR) !== this.userId) return
    this.doc.transact(() => {
      if (changes.text !== undefined) comment.set(CM.TEXT, changes.text)
      if (changes.deleted !== undefined) comment.set(CM.DELETED, changes.deleted)
      comment.set(CM.EDITED_AT, now())
    })
  }
}

export function isBox (v) {
  return Array.isArray(v) && v.length === 4 && v.every(Number.isFinite) && v[2] > 0 && v[3] > 0
}

function readPin (id, map) {
  const thread = map.get(P.THREAD)
  const region = plain(map.get(P.REGION))
  return {
    id,
    x: Number(map.get(P.X)) || 0,
    y: Number(map.get(P.Y)) || 0,
    author: map.get(P.AUTHOR),
    text: String(map.get(P.TEXT) ?? ''),
    status: map.get(P.STATUS),
    created_at: Number(map.get(P.CREATED_AT)) || 0,
    region: isBox(region) ? region : null,
    mask: map.get(P.MASK) || null,
    revision: map.get(P.REVISION) || ORIGINAL,
    frame: Number.isFinite(map.get(P.FRAME)) ? Math.round(map.get(P.FRAME)) : null,
    frames: isRange(plain(map.get(P.FRAMES))) ? plain(map.get(P.FRAMES)).map(Math.round) : null,
    carried_from: map.get(P.CARRIED_FROM) || null,
    jobs: plain(map.get(P.JOBS)) || [],
    layers: plain(map.get(P.LAYERS)) || [],
    thread: thread instanceof Y.Array
      ? thread.toArray().filter((c) => c instanceof Y.Map).map((c) => ({
        id: c.get(CM.ID),
        author: c.get(CM.AUTHOR),
        text: String(c.get(CM.TEXT) ?? ''),
        at: c.get(CM.AT),
        edited_at: c.get(CM.EDITED_AT),
        deleted: c.get(CM.DELETED) === true
      }))
      : []
  }
}

function readLayer (map, index) {
  return {
    index,
    id: map.get(L.ID),
    pin_id: map.get(L.PIN_ID),
    patch: map.get(L.PATCH),
    box: plain(map.get(L.BOX)),
    parent: map.get(L.PARENT) || null,
    fix: map.get(L.FIX) || null, // the round: variants of one fix request share it
    source: map.get(L.SOURCE),
    params: plain(map.get(L.PARAMS)) || {},
    author: map.get(L.AUTHOR),
    created_at: map.get(L.CREATED_AT),
    state: map.get(L.STATE) || 'pending',
    decisions: plain(map.get(L.DECISIONS)) || {},
    revision: map.get(L.REVISION) || ORIGINAL
  }
}

function readRevision (map, index) {
  const n = (key) => (Number.isFinite(map.get(key)) ? Number(map.get(key)) : null)
  return {
    index,
    id: map.get(R.ID),
    kind: map.get(R.KIND),
    media: map.get(R.MEDIA) || 'image',
    image: map.get(R.IMAGE) || null,
    mp4: map.get(R.MP4) || null,
    webm: map.get(R.WEBM) || null,
    poster: map.get(R.POSTER) || null,
    width: n(R.WIDTH),
    height: n(R.HEIGHT),
    fps: n(R.FPS),
    frames: n(R.FRAMES),
    source: plain(map.get(R.SOURCE)) || null,
    params: plain(map.get(R.PARAMS)) || {},
    carry: plain(map.get(R.CARRY)) || null,
    author: map.get(R.AUTHOR),
    created_at: map.get(R.CREATED_AT),
    job: map.get(R.JOB) || null,
    state: map.get(R.STATE) || 'pending',
    decisions: plain(map.get(R.DECISIONS)) || {}
  }
}

function isRange (v) {
  return Array.isArray(v) && v.length === 2 && v.every(Number.isFinite) && v[0] <= v[1]
}

function readJob (map) {
  const job = {}
  for (const key of Object.values(J)) job[key] = plain(map.get(key))
  // Fields the server may add (a box for the preview) come along as they are.
  for (const [key, value] of map.entries()) if (!(key in job)) job[key] = plain(value)
  return job
}
