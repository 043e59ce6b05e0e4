// A <canvas> redrawn at most once per animation frame, sized in device pixels.

export class Surface {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {object} view  the shared view (zoom and pan)
   * @param {() => object} scene  what to draw, read at draw time
   */
  constructor (canvas, view, scene) {
    this.canvas = canvas
    this.ctx = canvas.getContext('2d')
    this.view = view
    this.scene = scene
    this._frame = 0
  }

  invalidate () {
    if (!this._frame) this._frame = requestAnimationFrame(() => this.draw())
  }

  resize (width, height) {
    const dpr = window.devicePixelRatio || 1
    this.canvas.width = Math.round(width * dpr)
    this.canvas.height = Math.round(height * dpr)
    this.invalidate()
  }

  draw () {
    this._frame = 0
  }
}
