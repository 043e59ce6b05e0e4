// The review room: boots from the share link (/s/{session}?token=...), asks a role link's
// holder for a name (join.js), joins the live document and wires the canvas, the panels and
// the shortcuts together.
import { Api, ApiError } from './api.js'
import { App } from './app.js'
import { CanvasRenderer } from './canvas.js'
import { Connection } from './connection.js'
import { Cursors } from './cursors.js'
import { byId } from './dom.js'
import { perFrame } from './events.js'
import { ImageCache } from './images.js'
import { attachInput } from './input.js'
import { Markers } from './markers.js'
import { Overlay } from './overlay.js'
import { Presence } from './presence.js'
import { DocStore } from './store.js'
import { View } from './view.js'
import { PinComposer } from './composer.js'
import { mountCompareUi } from './compare-ui.js'
import { mountShortcuts } from './shortcuts.js'
import { mountStatus, fatal } from './status.js'
import { mountToolbar } from './toolbar.js'
import { mountPinsPanel } from './panels/pins.js'
import { mountLayersPanel } from './panels/layers.js'
import { mountFixPanel } from './panels/fix.js'
import { mountPeople } from './panels/people.js'
import { mountSharePanel } from './panels/share.js'
import { resolvePerson } from './join.js'
import { mountReplayButton } from './replay.js'
import { mountRevisionStrip, mountRevisionsPanel } from './revisions.js'
import { mountClip } from './clip.js'

const WHY = {
  401: 'This link is not valid, or it has expired. Ask the session owner for a new one.',
  403: 'This link belongs to another session, or it was revoked.',
  404: 'This session does not exist.'
}

const REFUSED_KEY = 'proofroom:refused'
// Pictures longer than this on a side get a downscaled preview first (the server's is 1024).
const PREVIEW_OVER = 2048
const PREVIEW = 'preview:'
const previewUrl = (token, id) => `/blobs/${encodeURIComponent(id)}/preview?token=${encodeURIComponent(token)}`

async function boot () {
  const sessionId = document.body.dataset.session
  let token, me, session
  try {
    const person = await resolvePerson(sessionId)
    if (!person) return fatal('Open this page from a share link: the link carries your access token.')
    ;({ token, me } = person)
    session = await new Api(token).get(`/api/sessions/${encodeURIComponent(sessionId)}`)
  } catch (err) {
    return fatal(err instanceof ApiError ? WHY[err.status] || err.message : String(err))
  }
  const api = new Api(token)
  const view = new View()
  const conn = new Connection({ sessionId, token })
  const identity = { userId: me.user_id, name: me.name, role: me.role }
  const store = new DocStore(conn.doc, identity)
  const presence = new Presence(conn.awareness, identity, sessionId)
  // Names of everyone in the session, here or not (a decision's author may have left).
  api.get(`/api/sessions/${encodeURIComponent(sessionId)}/participants`).then(({ participants }) => {
    presence.learn(Object.fromEntries(Object.entries(participants || {}).map(([id, p]) => [id, p && p.name])))
  }, () => {}) // then names come with presence, as people arrive
  let renderer = null
  const images = new ImageCache(
    (id) => id.startsWith(PREVIEW) ? previewUrl(token, id.slice(PREVIEW.length)) : api.blobUrl(id),
    () => renderer && renderer.invalidate())
  // A big picture paints first as its small preview (about 100 kB), then in full.
  session.preview = Math.max(session.width, session.height) > PREVIEW_OVER ? PREVIEW + session.base : null
  if (session.preview) images.load(session.preview).catch(() => {})
  images.load(session.base) // start the largest download before anything else
  const app = new App({ api, me: identity, session, conn, store, presence, view, images })
  // A refused change: start over from the server's copy, and say why once reloaded.
  conn.on('stale', (reason) => {
    try { sessionStorage.setItem(REFUSED_KEY, reason) } catch (_err) {}
    location.reload()
  })
  const refused = sessionStorage.getItem(REFUSED_KEY)
  if (refused) {
    sessionStorage.removeItem(REFUSED_KEY)
    queueMicrotask(() => app.toast(`The server refused a change: ${refused}`, 'error'))
  }
  const body = document.body
  body.classList.add(`role-${me.role}`)
  for (const [cap, on] of Object.entries(app.caps)) body.classList.toggle(`can-${cap}`, on)
  byId('title').textContent = session.title
  document.title = `${session.title} · Proofroom`
  byId('role-badge').textContent = me.role

  // -- the stage --------------------------------------------------------------------------
  const stage = byId('stage')
  renderer = new CanvasRenderer(byId('image-canvas'), view, images, () => app.imageScene())
  const overlay = new Overlay(byId('overlay-canvas'), view, () => app.overlayScene())
  const markers = new Markers(byId('markers'), view, {
    onSelect: (id) => app.selectPin(id),
    // Only a pin's author may move it (the server's guard says the same).
    canMove: (id) => app.caps.comment && store.pin(id)?.author === me.user_id,
    onMove: (id, x, y) => store.movePin(id, x, y)
  })
  const cursors = new Cursors(byId('cursors'), view)
  const composer = new PinComposer(byId('composer-host'), app)
  // A new pin goes on the revision shown and, on a clip, the frame shown.
  store.pinContext = () => ({
    revision: app.state.revision,
    frame: app.revision().media === 'video' ? app.state.frame : null
  })
  app.redraw = () => {
    renderer.invalidate()
    overlay.invalidate()
  }
  view.imageWidth = session.width
  view.imageHeight = session.height
  new ResizeObserver(() => {
    const r = stage.getBoundingClientRect()
    view.resize(r.width, r.height)
    renderer.resize(r.width, r.height)
    overlay.resize(r.width, r.height)
  }).observe(stage)
  const r = stage.getBoundingClientRect()
  view.resize(r.width, r.height)
  view.fit()
  view.on('change', () => {
    app.redraw()
    markers.position()
    cursors.position()
    composer.position()
    presence.setViewport(view.viewport())
    stage.dataset.view = `${view.scale},${view.tx},${view.ty}`
  })
  stage.dataset.view = `${view.scale},${view.tx},${view.ty}`
  presence.on('leader-viewport', (vp) => view.follow(vp))

  const renderMarkers = perFrame(() => {
    const busy = new Set(store.jobList().filter((j) => j.status === 'queued' || j.status === 'running').map((j) => j.pin_id))
    markers.render(app.stagePins(), {
      selectedId: app.state.selectedPin,
      userId: me.user_id,
      busyPins: busy,
      showResolved: app.state.showResolved,
      nameOf: (id) => presence.nameOf(id)
    })
  })
  store.on('pins', () => { renderMarkers(); overlay.invalidate() })
  store.on('jobs', renderMarkers)
  store.on('meta', () => {
    overlay.invalidate()
    const title = store.metaInfo().title
    if (title) byId('title').textContent = title
  })
  store.on('layers', () => {
    for (const layer of store.layerList()) images.load(layer.patch).catch(() => {})
  })
  app.on('change:selectedPin', renderMarkers)
  app.on('change:frame', () => { renderMarkers(); overlay.invalidate() })
  // Another revision: its picture (or clip), size, pins and layers.
  const showRevision = () => {
    const rev = app.revision()
    stage.dataset.revision = rev.id
    if (view.imageWidth !== rev.width || view.imageHeight !== rev.height) view.setImage(rev.width, rev.height)
    renderMarkers()
    app.redraw()
  }
  app.on('change:revision', showRevision)
  store.on('revisions', showRevision)
  mountClip(stage, app)
  mountRevisionStrip(byId('revision-strip'), app)
  presence.on('peers', (peers) => cursors.render(peers))
  presence.on('names', renderMarkers)

  // -- panels -------------------------------------------------------------------------------
  const pinsPanel = mountPinsPanel(byId('panel-pins'), app)
  mountLayersPanel(byId('panel-layers'), app)
  mountRevisionsPanel(byId('panel-revisions'), app)
  if (app.caps.edit) mountFixPanel(byId('panel-fix'), app)
  mountPeople(byId('panel-people'), byId('avatars'), app)
  const share = app.caps.administer ? mountSharePanel(byId('panel-share'), app) : null
  if (app.caps.administer) mountReplayButton(byId('replay-btn'), byId('replay'), api, sessionId)
  mountTabs(app)
  // On a small screen the panel is a sheet over the lower canvas: the pin it shows stays
  // in sight above it (a pin just added low on the picture would be hidden otherwise).
  app.on('panel-open', () => requestAnimationFrame(() => {
    const pin = app.state.selectedPin && store.pin(app.state.selectedPin)
    const sheet = byId('sidebar')
    if (!pin || !body.classList.contains('sidebar-open') || getComputedStyle(sheet).position !== 'fixed') return
    const covered = stage.getBoundingClientRect().bottom - (window.innerHeight - sheet.offsetHeight)
    view.keepInSight(pin.x, pin.y, { bottom: Math.max(0, covered) })
  }))
  mountToolbar(byId('toolbar'), app)
  mountCompareUi(byId('compare-ui'), app)
  mountStatus(app, { badge: byId('conn'), banner: byId('banner'), toasts: byId('toasts') })
  mountShortcuts(app, { help: byId('help'), composer, pinsPanel })
  byId('help-btn').addEventListener('click', () => byId('help').showModal())
  byId('sidebar-btn').addEventListener('click', () => body.classList.toggle('sidebar-open'))

  attachInput(stage, app, {
    onPinDraft: (draft) => {
      if (!app.caps.comment) return
      app.emit('pin-draft') // a playing clip stops on the frame the pin goes on
      composer.open(draft)
    },
    onLockDrawn: (box) => share && share.addLock(box)
  })
  app.on('change:tool', (tool) => {
    stage.dataset.tool = tool
    // The panel changes, but does not slide over the canvas where one is about to draw.
    if (['brush', 'erase', 'box'].includes(tool)) app.set('tab', 'fix')
    if (tool === 'lock') app.set('tab', 'share')
  })
  app.on('locks-unavailable', () => {
    if (app.state.tool === 'lock') app.set('tool', 'hand')
    body.classList.add('no-locks')
  })
  app.on('stage-tap', () => body.classList.remove('sidebar-open'))
  const touch = matchMedia('(pointer: coarse)').matches
  app.set('tool', app.caps.comment && !touch ? 'pin' : 'hand')
  stage.dataset.tool = app.state.tool

  // -- ready ----------------------------------------------------------------------------------
  store.on('read-only', (why) => app.toast(why === 'disconnected'
    ? 'This page is disconnected for good: changes cannot be saved. Reload to rejoin.'
    : 'Your link is read-only.'))
  conn.on('state', (state) => {
    if (state === 'closed') store.closed = true
    if (state === 'synced' && body.dataset.state !== 'ready') {
      renderMarkers()
      requestAnimationFrame(() => {
        body.dataset.state = 'ready'
        performance.mark('proofroom-interactive')
      })
    }
  })
  if (session.preview) {
    images.load(session.preview).then(() => {
      renderer.invalidate()
      requestAnimationFrame(() => {
        if (body.dataset.image) return
        body.dataset.image = 'preview'
        performance.mark('proofroom-preview')
      })
    }, () => {}) // the full image follows anyway
  }
  images.load(session.base).then(() => {
    renderer.invalidate()
    requestAnimationFrame(() => {
      body.dataset.image = 'drawn'
      performance.mark('proofroom-image')
    })
  }, () => app.toast('The image could not be loaded.', 'error'))
  conn.start()
  renderMarkers()
}

function mountTabs (app) {
  const tabs = [...document.querySelectorAll('[data-tab]')]
  for (const tab of tabs) {
    const allowed = { fix: app.caps.edit, share: app.caps.administer }[tab.dataset.tab]
    if (allowed === false) tab.hidden = true
    tab.addEventListener('click', () => {
      // On a small screen the active tab folds the panel away again.
      if (document.body.classList.contains('sidebar-open') && app.state.tab === tab.dataset.tab) {
        document.body.classList.remove('sidebar-open')
      } else app.showTab(tab.dataset.tab)
    })
  }
  const render = () => {
    for (const tab of tabs) {
      const on = tab.dataset.tab === app.state.tab
      tab.setAttribute('aria-selected', String(on))
      byId(`panel-${tab.dataset.tab}`).hidden = !on
    }
  }
  app.on('change:tab', render)
  app.on('panel-open', () => document.body.classList.add('sidebar-open'))
  render()
}

boot()
