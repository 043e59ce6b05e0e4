// Draws the image with its layers on a <canvas>, in the view's transform, at the
// device's pixel ratio. Pixels are shown unsmoothed from 2x zoom, so a reviewer can
// inspect them. Compare modes draw a layer against its parent with clipping.

import { Surface } from './surface.js'

const FADE_MS = 300

export class CanvasRenderer extends Surface {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {import('./view.js').View} view
   * @param {() => object} scene  what to draw: {base, preview, layers, previews, compare}
   */
  constructor (canvas, view, images, scene) {
    super(canvas, view, scene)
    this.images = images
  }

  draw () {
    this._frame = 0
    const { ctx, view } = this
    const dpr = window.devicePixelRatio || 1
    const scene = this.scene()
    ctx.setTransform(1, 0, 0, 1, 0, 0)
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height)
    const compare = scene.compare
    if (compare && compare.mode === 'side') {
      // Two halves, each centred on the same image point: before left, after right.
      const half = view.width / 2
      this._half(scene, compare, dpr, 0, half, -half / 2, false)
      this._half(scene, compare, dpr, half, half, half / 2, true)
      this._mark('view', `${view.scale},${view.tx},${view.ty}`)
      return
    }
    this._setTransform(dpr, 0)
    ctx.imageSmoothingEnabled = view.scale < 2
    const animating = this._stack(scene, compare)
    if (compare) this._compare(scene, compare, dpr)
    if (animating) this.invalidate()
    this._mark('view', `${view.scale},${view.tx},${view.ty}`)
  }

  /** Say on the canvas element what it shows (data-view, as the stage's; data-patches). */
  _mark (key, value) {
    if (this.canvas.dataset[key] !== String(value)) this.canvas.dataset[key] = value
  }

  _setTransform (dpr, shift) {
    const { view } = this
    this.ctx.setTransform(dpr * view.scale, 0, 0, dpr * view.scale, dpr * (view.tx + shift), dpr * view.ty)
  }

  _half (scene, compare, dpr, left, width, shift, after) {
    const { ctx } = this
    ctx.save()
    ctx.setTransform(1, 0, 0, 1, 0, 0)
    ctx.beginPath()
    ctx.rect(left * dpr, 0, width * dpr, this.canvas.height)
    ctx.clip()
    this._setTransform(dpr, shift)
    ctx.imageSmoothingEnabled = this.view.scale < 2
    this._base(scene)
    for (const layer of compare.before) this._patch(layer)
    if (after) this._patch(compare.layer)
    ctx.restore()
  }

  _base (scene) {
    const { ctx } = this
    // A big picture's downscaled preview stands in until the full image has decoded.
    const full = this.images.get(scene.base)
    const base = full || (scene.preview ? this.images.get(scene.preview) : null)
    this._mark('base', full ? 'full' : base ? 'preview' : 'none')
    if (base) {
      ctx.drawImage(base, 0, 0, scene.width, scene.height)
    } else {
      // Until the image arrives, its frame shows where pins and regions sit.
      ctx.fillStyle = '#2b2f36'
      ctx.fillRect(0, 0, scene.width, scene.height)
    }
  }

  /** Draw a layer's patch; false while its image loads. */
  _patch (layer) {
    const img = this.images.get(layer.patch)
    if (!img) return false
    const [x, y, w, h] = layer.box
    this.ctx.drawImage(img, x, y, w, h)
    return true
  }

  /** Base, visible layers and job previews; returns whether a fade is still running. */
  _stack (scene, compare) {
    const { ctx } = this
    this._base(scene)
    if (compare) {
      for (const layer of compare.before) this._patch(layer)
      if (compare.mode === 'toggle' && compare.showAfter) this._patch(compare.layer)
      if (compare.mode === 'diff') this._patch(compare.layer)
      return false
    }
    const drawn = []
    for (const layer of scene.layers) if (this._patch(layer)) drawn.push(layer.id)
    this._mark('patches', drawn.length) // layer patches drawn
    this._mark('layers', drawn.join(' ')) // which ones, bottom to top
    let animating = false
    const t = performance.now()
    for (const preview of scene.previews) {
      const img = this.images.get(preview.id)
      if (!img || !preview.box) continue
      if (preview.loadedAt === undefined) preview.loadedAt = t
      const alpha = Math.min(1, (t - preview.loadedAt) / FADE_MS)
      if (alpha < 1) animating = true
      ctx.globalAlpha = alpha
      const [x, y, w, h] = preview.box
      ctx.drawImage(img, x, y, w, h)
      ctx.globalAlpha = 1
    }
    return animating
  }

  _compare (scene, compare, dpr) {
    const { ctx, view } = this
    if (compare.mode === 'slider') {
      // Before everywhere, the layer only right of the handle.
      const cut = compare.slider * view.width
      ctx.save()
      ctx.setTransform(1, 0, 0, 1, 0, 0)
      ctx.beginPath()
      ctx.rect(cut * dpr, 0, this.canvas.width - cut * dpr, this.canvas.height)
      ctx.clip()
      this._setTransform(dpr, 0)
      this._patch(compare.layer)
      ctx.restore()
    } else if (compare.mode === 'diff') {
      const [x, y, w, h] = compare.layer.box
      // Dim everything, then show the amplified difference inside the layer's box.
      ctx.fillStyle = 'rgba(10, 12, 16, 0.7)'
      ctx.fillRect(0, 0, scene.width, scene.height)
      if (compare.diff) ctx.drawImage(compare.diff, x, y, w, h)
    }
  }
}
