// Versions as people talk about them: named v1, v2...; grouped by pin and round (a round is
// one fix request, its variants side by side); which variant of its round a version is; and
// the caption that says what the canvas shows.

import { LAYER_STATE_LABEL } from './contract.js'

/** A version's short name, as everyone in the room says it: "v7". */
export const versionName = (layer) => `v${layer.index + 1}`
export const stateLabel = (state) => LAYER_STATE_LABEL[state] || state

/**
 * Versions by pin and round: [{pin, rounds: [{fix, layers, current}]}], pins in their
 * order, rounds newest first (the current one is the newest), variants in request order.
 */
export function groupVersions (layers, pins) {
  const byPin = new Map()
  for (const layer of layers) {
    if (!byPin.has(layer.pin_id)) byPin.set(layer.pin_id, new Map())
    const rounds = byPin.get(layer.pin_id)
    const fix = layer.fix || layer.id
    if (!rounds.has(fix)) rounds.set(fix, [])
    rounds.get(fix).push(layer)
  }
  const groups = []
  for (const [pinId, rounds] of byPin) {
    const list = [...rounds].map(([fix, ls], i) => ({
      fix,
      number: i + 1,
      layers: ls.sort((a, b) => (Number(a.params.variant) || 0) - (Number(b.params.variant) || 0) || a.index - b.index)
    }))
    list.reverse()
    if (list.length) list[0].current = true
    groups.push({ pinId, pin: pins.get(pinId) || null, rounds: list })
  }
  groups.sort((a, b) => (a.pin?.number ?? Infinity) - (b.pin?.number ?? Infinity))
  return groups
}

/** Which variant of its round a layer is: {k, n} (1-based), n being how many were asked. */
export function variantOf (layer, siblings) {
  const asked = Number(layer.params.variants) || 0
  const k = layer.params.variant !== undefined ? Number(layer.params.variant) + 1 : siblings.indexOf(layer) + 1
  return { k, n: Math.max(asked, siblings.length, k) }
}

/** The versions of `layer`'s round (its fix request), in variant order. */
export function siblingsOf (store, layer) {
  const fix = layer.fix || layer.id
  return store.layerList().filter((l) => (l.fix || l.id) === fix)
    .sort((a, b) => (Number(a.params.variant) || 0) - (Number(b.params.variant) || 0) || a.index - b.index)
}

/** What the canvas shows, in words: "Showing v3 (variant 2 of 4) over the approved image". */
export function canvasCaption (store, selectedId, revision = null) {
  // An upscale or a clip is a whole picture of its own (revisions.js): say which.
  if (revision && revision.kind !== 'original') {
    const what = revision.kind === 'clip' ? 'a clip' : 'an upscale'
    return `Showing v${revision.index + 1}, ${what} (${stateLabel(revision.state).toLowerCase()})`
  }
  const layers = store.layerList()
  const approved = layers.filter((l) => l.state === 'approved')
  const picture = approved.length ? 'the approved image' : 'the original image'
  const selected = selectedId && store.layer(selectedId)
  if (!selected) {
    const waiting = layers.filter((l) => l.state === 'pending').length
    return `Showing ${picture}` + (waiting
      ? ` · ${waiting} version${waiting > 1 ? 's' : ''} waiting for review: select one to see it`
      : '')
  }
  if (selected.state === 'approved') return `Showing the approved image, with ${versionName(selected)} in it`
  const siblings = siblingsOf(store, selected)
  const { k, n } = variantOf(selected, siblings)
  const parts = [n > 1 ? `variant ${k} of ${n}` : null, selected.state !== 'pending' ? stateLabel(selected.state).toLowerCase() : null]
    .filter(Boolean)
  return `Showing ${versionName(selected)}${parts.length ? ` (${parts.join(', ')})` : ''} over ${picture}`
}

/** Where a patch smaller than the picture goes: the pin's region if it is that size,
 * otherwise centred on the pin, kept inside the picture. */
export function patchBox (pin, [w, h], width, height) {
  if (pin.region && pin.region[2] === w && pin.region[3] === h) return pin.region.map(Math.round)
  const cx = pin.region ? pin.region[0] + pin.region[2] / 2 : pin.x
  const cy = pin.region ? pin.region[1] + pin.region[3] / 2 : pin.y
  const x = Math.min(width - w, Math.max(0, Math.round(cx - w / 2)))
  const y = Math.min(height - h, Math.max(0, Math.round(cy - h / 2)))
  return [x, y, w, h]
}
