// Vector marks over the image, redrawn in screen space at every view change so they stay
// one device pixel thin at any zoom: pin regions, locks, the mask being painted, drafts,
// the selected layer's box and where queued jobs will work.

import { Surface } from './surface.js'

export class Overlay extends Surface {
  draw () {
    this._frame = 0
    const { ctx } = this
    const dpr = window.devicePixelRatio || 1
    const s = this.scene()
    ctx.setTransform(1, 0, 0, 1, 0, 0)
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height)
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0)
    if (s.hideMarks) return
    for (const lock of s.locks) this._lock(lock)
    for (const pin of s.regions) {
      this._rect(pin.region, pin.selected ? '#ffd24a' : 'rgba(255, 210, 74, 0.55)', pin.selected ? 2 : 1, pin.resolved ? [4, 4] : [])
    }
    for (const box of s.jobBoxes) this._rect(box, '#7cc4ff', 1.5, [6, 4])
    if (s.layerBox) this._rect(s.layerBox, '#62e0a6', 2, [])
    if (s.mask) this._mask(s.mask)
    if (s.draft) this._rect(s.draft.box, s.draft.color, 2, [5, 3])
  }

  _screenBox ([x, y, w, h]) {
    const [sx, sy] = this.view.toScreen(x, y)
    return [sx, sy, w * this.view.scale, h * this.view.scale]
  }

  _rect (box, color, width, dash) {
    const { ctx } = this
    const [x, y, w, h] = this._screenBox(box)
    ctx.save()
    ctx.setLineDash(dash)
    ctx.lineWidth = width + 2
    ctx.strokeStyle = 'rgba(0, 0, 0, 0.45)'
    ctx.strokeRect(x, y, w, h)
    ctx.lineWidth = width
    ctx.strokeStyle = color
    ctx.strokeRect(x, y, w, h)
    ctx.restore()
  }

  _lock (box) {
    const { ctx } = this
    const [x, y, w, h] = this._screenBox(box)
    ctx.save()
    ctx.beginPath()
    ctx.rect(x, y, w, h)
    ctx.clip()
    ctx.fillStyle = 'rgba(255, 90, 90, 0.12)'
    ctx.fillRect(x, y, w, h)
    ctx.strokeStyle = 'rgba(255, 90, 90, 0.5)'
    ctx.lineWidth = 1
    ctx.beginPath()
    for (let d = -h; d < w; d += 10) {
      ctx.moveTo(x + d, y + h)
      ctx.lineTo(x + d + h, y)
    }
    ctx.stroke()
    ctx.restore()
    this._rect(box, '#ff5a5a', 1.5, [])
  }

  /** The painted mask: strokes in image pixels, erasing by punching out. */
  _mask (strokes) {
    const { ctx, view } = this
    ctx.save()
    // Painted on a separate layer so that the eraser removes paint, not the image.
    const layer = this._maskLayer()
    const lctx = layer.getContext('2d')
    const dpr = window.devicePixelRatio || 1
    lctx.setTransform(1, 0, 0, 1, 0, 0)
    lctx.clearRect(0, 0, layer.width, layer.height)
    lctx.setTransform(dpr * view.scale, 0, 0, dpr * view.scale, dpr * view.tx, dpr * view.ty)
    // Only the picture can be fixed: a stroke past its edge shows no paint out there.
    lctx.save()
    lctx.beginPath()
    lctx.rect(0, 0, view.imageWidth, view.imageHeight)
    lctx.clip()
    paintStrokes(lctx, strokes, 'rgba(255, 64, 160, 1)')
    lctx.restore()
    ctx.setTransform(1, 0, 0, 1, 0, 0)
    ctx.globalAlpha = 0.45
    ctx.drawImage(layer, 0, 0)
    ctx.restore()
  }

  _maskLayer () {
    if (!this._layer) this._layer = document.createElement('canvas')
    if (this._layer.width !== this.canvas.width || this._layer.height !== this.canvas.height) {
      this._layer.width = this.canvas.width
      this._layer.height = this.canvas.height
    }
    return this._layer
  }
}

/** Paint mask strokes ({mode: paint|erase|box, r, points | box}) with the current transform. */
export function paintStrokes (ctx, strokes, color) {
  ctx.lineCap = 'round'
  ctx.lineJoin = 'round'
  for (const stroke of strokes) {
    ctx.globalCompositeOperation = stroke.mode === 'erase' ? 'destination-out' : 'source-over'
    ctx.fillStyle = color
    ctx.strokeStyle = color
    if (stroke.mode === 'box') {
      const [x, y, w, h] = stroke.box
      ctx.fillRect(x, y, w, h)
      continue
    }
    const pts = stroke.points
    ctx.lineWidth = stroke.r * 2
    ctx.beginPath()
    ctx.moveTo(pts[0][0], pts[0][1])
    // A single tap still leaves a dot.
    if (pts.length === 1) ctx.lineTo(pts[0][0] + 0.01, pts[0][1])
    for (const [x, y] of pts.slice(1)) ctx.lineTo(x, y)
    ctx.stroke()
  }
  ctx.globalCompositeOperation = 'source-over'
}

/** The bounding box [x, y, w, h] of painted strokes, clipped to the image (null if empty). */
export function strokesBox (strokes, width, height) {
  let x0 = Infinity
  let y0 = Infinity
  let x1 = -Infinity
  let y1 = -Infinity
  for (const s of strokes) {
    if (s.mode === 'erase') continue
    const pts = s.mode === 'box' ? [[s.box[0], s.box[1]], [s.box[0] + s.box[2], s.box[1] + s.box[3]]] : s.points
    const r = s.mode === 'box' ? 0 : s.r
    for (const [x, y] of pts) {
      x0 = Math.min(x0, x - r)
      y0 = Math.min(y0, y - r)
      x1 = Math.max(x1, x + r)
      y1 = Math.max(y1, y + r)
    }
  }
  if (x0 === Infinity) return null
  x0 = Math.max(0, Math.floor(x0))
  y0 = Math.max(0, Math.floor(y0))
  x1 = Math.min(width, Math.ceil(x1))
  y1 = Math.min(height, Math.ceil(y1))
  return x1 > x0 && y1 > y0 ? [x0, y0, x1 - x0, y1 - y0] : null
}

/** The mask as a full-image-size PNG data URL: white and opaque where the fix may paint. */
export function maskDataUrl (strokes, width, height) {
  const canvas = document.createElement('canvas')
  canvas.width = width
  canvas.height = height
  const ctx = canvas.getContext('2d')
  paintStrokes(ctx, strokes, '#ffffff')
  const url = canvas.toDataURL('image/png')
  canvas.width = canvas.height = 0 // free the (possibly huge) backing store at once
  return url
}
