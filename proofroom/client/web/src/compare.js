// The difference view of a layer against its parent: both crops of the layer's box are
// composed off-screen and every changed pixel is lit up, amplified so a subtle change shows.
const GAIN = 4

/** Draw `base` and `layers` cropped to `box` into a box-sized canvas. */
function compose (box, base, patches) {
  const [x, y, w, h] = box
  const canvas = document.createElement('canvas')
  canvas.width = w
  canvas.height = h
  const ctx = canvas.getContext('2d', { willReadFrequently: true })
  ctx.drawImage(base, -x, -y)
  for (const { img, box: [px, py, pw, ph] } of patches) ctx.drawImage(img, px - x, py - y, pw, ph)
  return canvas
}

/**
 * {canvas, changed, total, max}: the after image dimmed, changed pixels in magenta with
 * an intensity that follows the largest channel difference.
 */
export async function differenceOf (layer, chain, images, baseId) {
  const [base, ...patchImgs] = await Promise.all([
    images.load(baseId),
    ...chain.map((l) => images.load(l.patch)),
    images.load(layer.patch)
  ])
  const patches = chain.map((l, i) => ({ img: patchImgs[i], box: l.box }))
  const before = compose(layer.box, base, patches)
  const after = compose(layer.box, base, [...patches, { img: patchImgs[patchImgs.length - 1], box: layer.box }])
  const [, , w, h] = layer.box
  const a = before.getContext('2d', { willReadFrequently: true }).getImageData(0, 0, w, h).data
  const bImage = after.getContext('2d', { willReadFrequently: true }).getImageData(0, 0, w, h)
  const b = bImage.data
  let changed = 0
  let max = 0
  for (let i = 0; i < b.length; i += 4) {
    const d = Math.max(Math.abs(a[i] - b[i]), Math.abs(a[i + 1] - b[i + 1]), Math.abs(a[i + 2] - b[i + 2]))
    const grey = (b[i] * 0.3 + b[i + 1] * 0.59 + b[i + 2] * 0.11) * 0.35
    if (d > 0) {
      changed++
      if (d > max) max = d
    }
    const v = Math.min(1, (d * GAIN) / 255)
    b[i] = grey + (255 - grey) * v
    b[i + 1] = grey + (40 - grey) * v
    b[i + 2] = grey + (200 - grey) * v
    b[i + 3] = 255
  }
  after.getContext('2d').putImageData(bImage, 0, 0)
  return { canvas: after, changed, total: w * h, max }
}
