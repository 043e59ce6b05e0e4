// Blob images (base, patches, previews) loaded once, decoded off the main thread, and
// reported when ready so the canvas can redraw.
export class ImageCache {
  constructor (urlFor, onReady) {
    this._urlFor = urlFor
    this._onReady = onReady
    this._images = new Map() // id -> {img, ready, failed, promise}
  }

  /** The decoded image, or null while it loads (loading starts on the first call). */
  get (id) {
    if (!id) return null
    const entry = this._entry(id)
    return entry.ready ? entry.img : null
  }

  /** A promise of the decoded image. */
  load (id) {
    return this._entry(id).promise
  }

  _entry (id) {
    let entry = this._images.get(id)
    if (entry) return entry
    const img = new Image()
    img.decoding = 'async'
    entry = { img, ready: false, failed: false }
    entry.promise = new Promise((resolve, reject) => {
      img.onload = () => {
        // decode() keeps the first draw from stalling on a large image.
        img.decode().catch(() => {}).then(() => {
          entry.ready = true
          this._onReady(id)
          resolve(img)
        })
      }
      img.onerror = () => {
        entry.failed = true
        reject(new Error(`image ${id} could not be loaded`))
      }
    })
    entry.promise.catch(() => {}) // callers that care await it; the canvas just skips it
    img.src = this._urlFor(id)
    this._images.set(id, entry)
    return entry
  }
}
