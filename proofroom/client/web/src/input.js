// Pointer input on the stage, for mouse, pen and touch alike (pointer events): pan,
// wheel and pinch zoom, click or drag to drop a pin or a region, paint or box a mask,
// draw a lock. Gestures work in screen pixels; what they create is in image pixels.

const DRAG_THRESHOLD = 6

export function attachInput (stage, app, { onPinDraft, onLockDrawn }) {
  const { view, presence } = app
  const pointers = new Map() // pointer id -> {x, y}
  let gesture = null
  let spaceDown = false

  const local = (e) => {
    const r = stage.getBoundingClientRect()
    return [e.clientX - r.left, e.clientY - r.top]
  }
  const inImage = ([x, y]) => x >= 0 && y >= 0 && x <= app.session.width && y <= app.session.height
  const clampBox = ([x0, y0], [x1, y1]) => {
    const W = app.session.width
    const H = app.session.height
    const ax = Math.max(0, Math.min(W, Math.min(x0, x1)))
    const ay = Math.max(0, Math.min(H, Math.min(y0, y1)))
    const bx = Math.max(0, Math.min(W, Math.max(x0, x1)))
    const by = Math.max(0, Math.min(H, Math.max(y0, y1)))
    return [Math.round(ax), Math.round(ay), Math.round(bx - ax), Math.round(by - ay)]
  }
  const userMoved = () => app.emit('user-moved-view')

  function toolFor (e) {
    if (e.button === 1 || spaceDown) return 'hand'
    return app.state.tool
  }

  stage.addEventListener('pointerdown', (e) => {
    if (e.button !== 0 && e.button !== 1) return
    stage.setPointerCapture(e.pointerId)
    const at = local(e)
    pointers.set(e.pointerId, at)
    if (pointers.size === 2) {
      // A second finger turns any gesture into a pinch (and drops what the first started).
      const [a, b] = [...pointers.values()]
      gesture = { kind: 'pinch', dist: Math.hypot(a[0] - b[0], a[1] - b[1]), mid: midpoint(a, b) }
      app.set('draft', null)
      return
    }
    if (pointers.size > 2) return
    const tool = toolFor(e)
    const start = view.toImage(...at)
    gesture = { kind: tool, at, start, moved: false }
    if ((tool === 'brush' || tool === 'erase') && pinForMask()) {
      const stroke = { mode: tool === 'erase' ? 'erase' : 'paint', r: app.state.brush / view.scale, points: [start] }
      app.maskOf(app.state.selectedPin).push(stroke)
      gesture.stroke = stroke
      app.emit('mask')
      app.redraw()
    }
    e.preventDefault()
  })

  stage.addEventListener('pointermove', (e) => {
    const at = local(e)
    const image = view.toImage(...at)
    presence.setCursor(inImage(image) ? [Math.round(image[0]), Math.round(image[1])] : null)
    if (!pointers.has(e.pointerId)) return
    const prev = pointers.get(e.pointerId)
    pointers.set(e.pointerId, at)
    if (!gesture) return
    if (gesture.kind === 'pinch') {
      if (pointers.size < 2) return // one finger lifted: wait for both to end
      const [a, b] = [...pointers.values()]
      const dist = Math.hypot(a[0] - b[0], a[1] - b[1])
      const mid = midpoint(a, b)
      view.panBy(mid[0] - gesture.mid[0], mid[1] - gesture.mid[1])
      if (gesture.dist > 0) view.zoomAt(dist / gesture.dist, ...mid)
      gesture.dist = dist
      gesture.mid = mid
      userMoved()
      return
    }
    if (!gesture.moved && Math.hypot(at[0] - gesture.at[0], at[1] - gesture.at[1]) >= DRAG_THRESHOLD) {
      gesture.moved = true
    }
    switch (gesture.kind) {
      case 'hand':
        view.panBy(at[0] - prev[0], at[1] - prev[1])
        userMoved()
        break
      case 'brush':
      case 'erase':
        if (gesture.stroke) {
          gesture.stroke.points.push(image)
          app.redraw()
        }
        break
      case 'pin':
      case 'box':
      case 'lock':
        if (gesture.moved) {
          const color = { pin: '#ffd24a', box: '#ff40a0', lock: '#ff5a5a' }[gesture.kind]
          app.set('draft', { box: clampBox(gesture.start, image), color })
        }
        break
    }
  })

  const end = (e) => {
    if (!pointers.has(e.pointerId)) return
    pointers.delete(e.pointerId)
    const g = gesture
    if (!g || g.kind === 'pinch') {
      if (pointers.size === 0) gesture = null
      return
    }
    gesture = null
    const image = view.toImage(...local(e))
    if (e.type === 'pointercancel') {
      app.set('draft', null)
      return
    }
    if (g.stroke) app.emit('mask')
    if (g.kind === 'pin') {
      app.set('draft', null)
      if (g.moved) {
        const box = clampBox(g.start, image)
        if (box[2] >= 2 && box[3] >= 2) onPinDraft({ x: box[0] + box[2] / 2, y: box[1] + box[3] / 2, region: box })
      } else if (inImage(g.start)) {
        onPinDraft({ x: g.start[0], y: g.start[1], region: null })
      }
    } else if (g.kind === 'box') {
      app.set('draft', null)
      const box = clampBox(g.start, image)
      if (g.moved && box[2] >= 2 && box[3] >= 2 && pinForMask()) {
        app.maskOf(app.state.selectedPin).push({ mode: 'box', box })
        app.emit('mask')
      }
    } else if (g.kind === 'lock') {
      app.set('draft', null)
      const box = clampBox(g.start, image)
      if (g.moved && box[2] >= 2 && box[3] >= 2) onLockDrawn(box)
    } else if (g.kind === 'hand' && !g.moved && e.pointerType !== 'mouse') {
      // A tap on empty canvas closes what a small screen shows over it.
      app.emit('stage-tap')
    }
    app.redraw()
  }
  stage.addEventListener('pointerup', end)
  stage.addEventListener('pointercancel', end)
  stage.addEventListener('pointerleave', (e) => {
    if (!pointers.has(e.pointerId)) presence.setCursor(null)
  })

  // The Figma convention: scrolling pans (two fingers on a trackpad, in both directions;
  // Shift turns a mouse wheel sideways), pinching or Ctrl/Cmd+scroll zooms about the
  // pointer. Chromium, Firefox and Edge report a trackpad pinch as a wheel with ctrlKey.
  stage.addEventListener('wheel', (e) => {
    e.preventDefault()
    const at = local(e)
    // Lines (a mouse wheel) and pages scroll by very different amounts from pixels.
    const unit = e.deltaMode === 1 ? 33 : e.deltaMode === 2 ? view.height : 1
    let dx = e.deltaX * unit
    let dy = e.deltaY * unit
    if (e.ctrlKey || e.metaKey) {
      // A pinch sends many small deltas, a wheel notch one large one (capped: ~1.35x).
      view.zoomAt(Math.exp(-Math.max(-50, Math.min(50, dy)) * 0.006), ...at)
    } else {
      if (e.shiftKey && !dx) [dx, dy] = [dy, 0]
      view.panBy(-dx, -dy)
    }
    userMoved()
  }, { passive: false })

  // Safari (macOS trackpads, iPad with a trackpad) reports a pinch as gesture events.
  let gestureScale = 1
  stage.addEventListener('gesturestart', (e) => { e.preventDefault(); gestureScale = 1 })
  stage.addEventListener('gesturechange', (e) => {
    e.preventDefault()
    if (!(e.scale > 0)) return
    view.zoomAt(e.scale / gestureScale, ...local(e))
    gestureScale = e.scale
    userMoved()
  })
  stage.addEventListener('gestureend', (e) => e.preventDefault())

  window.addEventListener('keydown', (e) => {
    if (e.code === 'Space' && !isTypingTarget(e.target)) {
      spaceDown = true
      stage.classList.add('panning')
      e.preventDefault()
    }
  })
  window.addEventListener('keyup', (e) => {
    if (e.code === 'Space') {
      spaceDown = false
      stage.classList.remove('panning')
    }
  })

  function pinForMask () {
    if (app.state.selectedPin) return true
    app.toast('Select the pin to fix first, then paint its mask.')
    return false
  }
}

function midpoint (a, b) {
  return [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2]
}

function isTypingTarget (el) {
  return el instanceof HTMLElement && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT|BUTTON)$/.test(el.tagName))
}
