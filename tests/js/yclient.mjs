// The official Yjs client (yjs + y-websocket's WebsocketProvider) as a subprocess that the
// Python interop tests drive (tests/yjs_driver.py). Protocol: JSON lines.
//   stdout: one event per line, {"event": ...}; every command gets {"event":"result","id":..}.
//   stdin:  one command per line, {"id": N, "op": "...", ...}.
// Usage: node yclient.mjs --url ws://127.0.0.1:PORT/ws --room SESSION_ID --token TOKEN
//        [--no-reconnect] [--trace]
// The provider connects to `${url}/${room}?token=${token}`.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import * as authProtocol from 'y-protocols/auth'
import WebSocket from 'ws'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

process.on('uncaughtException', (err) => {
  emit({ event: 'fatal', error: String(err && err.stack ? err.stack : err) })
  process.exit(1)
})
process.on('unhandledRejection', (err) => {
  emit({ event: 'fatal', error: String(err && err.stack ? err.stack : err) })
  process.exit(1)
})

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    room: { type: 'string' },
    token: { type: 'string' },
    'no-reconnect': { type: 'boolean', default: false },
    trace: { type: 'boolean', default: false }
  }
})
if (!args.url || !args.room) {
  emit({ event: 'fatal', error: 'usage: yclient.mjs --url WS_URL --room ROOM [--token TOKEN]' })
  process.exit(2)
}

const ydoc = new Y.Doc()
// Define the roots up front with the types of the schema (DESIGN.md section 3).
const roots = {
  meta: ydoc.getMap('meta'),
  pins: ydoc.getMap('pins'),
  layers: ydoc.getArray('layers'),
  jobs: ydoc.getMap('jobs'),
  revisions: ydoc.getArray('revisions')
}
const docJSON = () => Object.fromEntries(Object.entries(roots).map(([k, v]) => [k, v.toJSON()]))

const provider = new WebsocketProvider(args.url, args.room, ydoc, {
  connect: false, // connect only after our handlers are installed
  params: args.token !== undefined ? { token: args.token } : {},
  WebSocketPolyfill: WebSocket,
  disableBc: true
})

// Auth (message type 2). y-websocket's own handler only console.warn()s and keeps the
// connection and the local edits; we report it as an event instead.
// provider.messageHandlers is a per-provider copy of the module's table, so this is safe.
provider.messageHandlers[2] = (_encoder, decoder, prov) => {
  authProtocol.readAuthMessage(decoder, prov.doc, (_ydoc, reason) =>
    emit({ event: 'permission_denied', reason })
  )
}

if (args.trace) {
  // Report the type (and sync sub-type) of every message received from the server.
  const names = { 0: 'sync', 1: 'awareness', 2: 'auth', 3: 'query_awareness' }
  const syncNames = { 0: 'step1', 1: 'step2', 2: 'update' }
  provider.messageHandlers = provider.messageHandlers.map((handler, type) =>
    (encoder, decoder, ...rest) => {
      const ev = { event: 'recv', type: names[type] ?? type }
      // The sync sub-type is the next var-uint, a single byte for 0..2 (lib0 decoder fields).
      if (type === 0) ev.sync = syncNames[decoder.arr[decoder.pos]]
      emit(ev)
      return handler(encoder, decoder, ...rest)
    })
}

provider.on('status', ({ status }) => emit({ event: 'status', status }))
provider.on('sync', (synced) => { if (synced) emit({ event: 'synced' }) })
provider.on('connection-error', (ev) =>
  emit({ event: 'connection_error', message: String(ev?.message ?? ev?.error ?? ev) })
)
provider.on('connection-close', (ev) => {
  // ev is null when the provider closed the socket itself (destroy, or 30 s of silence).
  emit({ event: 'close', code: ev ? ev.code : null, reason: ev ? String(ev.reason ?? '') : '' })
  // The provider reconnects forever with backoff; --no-reconnect stops that (setupWS checks it).
  if (args['no-reconnect']) provider.shouldConnect = false
})

provider.connect()

// ---- commands -------------------------------------------------------------------------

const getPin = (pinId) => {
  const pin = roots.pins.get(pinId)
  if (!(pin instanceof Y.Map)) throw new Error(`no pin ${pinId}`)
  return pin
}

const mapFrom = (fields) => {
  const m = new Y.Map()
  for (const [k, v] of Object.entries(fields ?? {})) m.set(k, v)
  return m
}

const getPath = (path) => {
  let cur = docJSON()
  for (const key of path) {
    if (cur === null || typeof cur !== 'object' || !(key in cur)) return undefined
    cur = cur[key]
  }
  return cur
}

// Deep equality on JSON values (object key order does not matter).
const jsonEqual = (a, b) => {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  const ka = Object.keys(a)
  const kb = Object.keys(b)
  return ka.length === kb.length && ka.every((k) => k in b && jsonEqual(a[k], b[k]))
}

// Resolves once the value at `path` equals `equals` (or, without `equals`, exists).
const waitFor = ({ path, equals, timeout = 5 }) => new Promise((resolve) => {
  const matches = () => {
    const v = getPath(path)
    return equals === undefined ? v !== undefined : jsonEqual(v, equals)
  }
  if (matches()) return resolve({ ok: true, value: getPath(path) })
  const done = (ok) => {
    ydoc.off('afterTransaction', check)
    clearTimeout(timer)
    resolve({ ok, value: getPath(path) ?? null })
  }
  // afterTransaction fires for local and remote changes, after observers ran.
  const check = () => { if (matches()) done(true) }
  ydoc.on('afterTransaction', check)
  const timer = setTimeout(() => done(false), timeout * 1000)
})

let closing = false
const ops = {
  state: () => ({ state: docJSON() }),
  add_pin: ({ pin_id: pinId, pin }) => {
    // One transaction -> one update message: the pin Map, its fields and an empty thread.
    ydoc.transact(() => {
      const m = mapFrom(pin)
      m.set('thread', new Y.Array())
      roots.pins.set(pinId, m)
    })
    return {}
  },
  reply: ({ pin_id: pinId, comment }) => {
    const thread = getPin(pinId).get('thread')
    if (!(thread instanceof Y.Array)) throw new Error(`pin ${pinId} has no thread`)
    thread.push([mapFrom(comment)])
    return {}
  },
  set: ({ root, key, value }) => {
    const r = roots[root]
    if (!(r instanceof Y.Map)) throw new Error(`${root} is not a Map root`)
    r.set(key, value)
    return {}
  },
  set_pin_field: ({ pin_id: pinId, key, value }) => {
    getPin(pinId).set(key, value)
    return {}
  },
  delete_pin: ({ pin_id: pinId }) => {
    roots.pins.delete(pinId)
    return {}
  },
  // A write to a root outside the schema (the server refuses it whole).
  set_unknown_root: ({ root, key, value }) => {
    ydoc.getMap(root).set(key, value)
    return {}
  },
  awareness: ({ state }) => {
    provider.awareness.setLocalState(state ?? null)
    return {}
  },
  awareness_states: () => {
    const entries = [...provider.awareness.getStates().entries()]
    return {
      client_id: ydoc.clientID,
      states: entries.map(([, s]) => s),
      by_client: Object.fromEntries(entries.map(([id, s]) => [String(id), s]))
    }
  },
  wait: waitFor,
  status: () => ({ connected: provider.wsconnected, synced: provider.synced, url: provider.url }),
  close: async () => {
    if (closing) return { exit: false }
    closing = true
    const ws = provider.ws
    provider.destroy() // sends our awareness removal, then closes the socket
    // Give the close handshake (and the queued awareness message) a moment to go out.
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      await new Promise((resolve) => {
        ws.once('close', resolve)
        setTimeout(resolve, 1000)
      })
    }
    return { exit: true }
  }
}

const handle = async (line) => {
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch (err) {
    emit({ event: 'result', id: null, error: `bad JSON: ${err.message}` })
    return
  }
  const op = ops[cmd.op]
  try {
    if (!op) throw new Error(`unknown op ${JSON.stringify(cmd.op)}`)
    const { exit, ...result } = await op(cmd)
    emit({ event: 'result', id: cmd.id ?? null, ...result })
    if (exit) process.stdout.write('', () => process.exit(0))
  } catch (err) {
    emit({ event: 'result', id: cmd.id ?? null, error: String(err?.message ?? err) })
  }
}

// Commands run concurrently (a `wait` must not block the others); results carry the id.
const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => { if (line.trim()) handle(line) })
// stdin closed (the test process went away): leave like `close` does.
rl.on('close', () => { if (!closing) handle('{"op":"close"}') })
