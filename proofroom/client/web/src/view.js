// The viewport: which part of the image the stage shows, at which zoom. Everything drawn
// over the image (pins, regions, masks, cursors) goes through toScreen/toImage, so it stays
// on its image pixels at every zoom.
import { Emitter } from './events.js'

const MAX_ZOOM = 32

export class View extends Emitter {
  constructor () {
    super()
    this.scale = 1
    this.tx = 0
    this.ty = 0
    this.width = 1 // stage size, CSS pixels
    this.height = 1
    this.imageWidth = 1
    this.imageHeight = 1
    this.fitted = true
    // Stage pixels along the bottom that a bar covers (a clip's timeline): fit above them.
    this.reserveBottom = 0
  }

  toScreen (x, y) {
    return [x * this.scale + this.tx, y * this.scale + this.ty]
  }

  toImage (sx, sy) {
    return [(sx - this.tx) / this.scale, (sy - this.ty) / this.scale]
  }

  fitScale () {
    return Math.min(this.width / this.imageWidth, (this.height - this.reserveBottom) / this.imageHeight) * 0.95
  }

  setImage (width, height) {
    this.imageWidth = width
    this.imageHeight = height
    this.fit()
  }

  /** The stage was resized: keep the image point at its centre where it was. */
  resize (width, height) {
    const [cx, cy] = this.toImage(this.width / 2, this.height / 2)
    this.width = Math.max(1, width)
    this.height = Math.max(1, height)
    if (this.fitted) this.fit()
    else this.centerOn(cx, cy, this.scale)
  }

  fit () {
    this.fitted = true
    const scale = this.fitScale()
    this.centerOn(this.imageWidth / 2, this.imageHeight / 2 + this.reserveBottom / 2 / scale, scale, true)
  }

  centerOn (x, y, scale = this.scale, keepFitted = false) {
    this.scale = this._clamp(scale)
    this.tx = this.width / 2 - x * this.scale
    this.ty = this.height / 2 - y * this.scale
    if (!keepFitted) this.fitted = false
    this.emit('change', this)
  }

  /** Zoom by `factor` keeping the image point under (sx, sy) in place. */
  zoomAt (factor, sx = this.width / 2, sy = this.height / 2) {
    const [ix, iy] = this.toImage(sx, sy)
    this.scale = this._clamp(this.scale * factor)
    this.tx = sx - ix * this.scale
    this.ty = sy - iy * this.scale
    this.fitted = false
    this.emit('change', this)
  }

  panBy (dx, dy) {
    this.tx += dx
    this.ty += dy
    this.fitted = false
    this.emit('change', this)
  }

  /** Image pixels visible, as awareness publishes them for followers. */
  viewport () {
    const [x, y] = this.toImage(this.width / 2, this.height / 2)
    return {
      x: Math.round(x),
      y: Math.round(y),
      zoom: Math.round(this.scale * 1000) / 1000,
      w: Math.round(this.width / this.scale),
      h: Math.round(this.height / this.scale)
    }
  }

  /** Show what a followed presenter sees: the same centre and extent, whatever our size. */
  follow ({ x, y, zoom, w, h }) {
    if (![x, y].every(Number.isFinite)) return
    const scale = Number.isFinite(w) && Number.isFinite(h) && w > 0 && h > 0
      ? Math.min(this.width / w, this.height / h)
      : zoom
    if (Number.isFinite(scale) && scale > 0) this.centerOn(x, y, scale)
  }

  /** Bring an image box into view, zooming out (never in) when it does not fit. */
  reveal ([x, y, w, h], margin = 80) {
    const [sx0, sy0] = this.toScreen(x, y)
    const [sx1, sy1] = this.toScreen(x + w, y + h)
    if (sx0 >= margin && sy0 >= margin && sx1 <= this.width - margin && sy1 <= this.height - margin) return
    const scale = Math.min(this.scale, (this.width - 2 * margin) / Math.max(w, 1), (this.height - 2 * margin) / Math.max(h, 1))
    this.centerOn(x + w / 2, y + h / 2, scale)
  }

  /**
   * Pan (never zoom) so that image point (x, y) shows on the part of the stage nothing
   * covers: `bottom` pixels hidden under a sheet, `top` kept for a marker's head.
   */
  keepInSight (x, y, { top = 56, bottom = 0, margin = 24 } = {}) {
    const [sx, sy] = this.toScreen(x, y)
    const low = Math.max(top, this.height - bottom - margin)
    const dy = sy > low ? low - sy : sy < top ? top - sy : 0
    const dx = sx < margin ? margin - sx : sx > this.width - margin ? this.width - margin - sx : 0
    if (dx || dy) this.panBy(dx, dy)
  }

  _clamp (scale) {
    const min = Math.min(this.fitScale() / 8, 1)
    return Math.min(MAX_ZOOM, Math.max(min, scale))
  }
}
