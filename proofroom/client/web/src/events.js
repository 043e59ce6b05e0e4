/** A minimal event emitter: `on` returns the function that unsubscribes. */
export class Emitter {
  constructor () {
    this._handlers = new Map()
  }

  on (event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set())
    this._handlers.get(event).add(fn)
    return () => this._handlers.get(event).delete(fn)
  }

  emit (event, ...args) {
    for (const fn of this._handlers.get(event) || []) fn(...args)
  }
}

/** Calls `fn` at most once per animation frame, with the arguments of the last call. */
export function perFrame (fn) {
  let pending = null
  return (...args) => {
    const first = pending === null
    pending = args
    if (first) {
      requestAnimationFrame(() => {
        const latest = pending
        pending = null
        fn(...latest)
      })
    }
  }
}

/** Calls `fn` at most every `ms` milliseconds; the last call is never lost. */
export function throttle (fn, ms) {
  let last = 0
  let timer = null
  let latest = null
  return (...args) => {
    latest = args
    const wait = last + ms - performance.now()
    if (wait <= 0) {
      last = performance.now()
      fn(...latest)
    } else if (timer === null) {
      timer = setTimeout(() => {
        timer = null
        last = performance.now()
        fn(...latest)
      }, wait)
    }
  }
}
