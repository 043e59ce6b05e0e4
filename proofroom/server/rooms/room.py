"""One live session: its document, its connections, and the tick that applies and fans out.

Every document change goes through :meth:`Room.run`, one tick at a time. A tick takes all
waiting items (client sync messages, server writes), applies them in order, appends the
resulting updates to the durable log in one commit, and only then sends anything: replies,
reverts and broadcasts. Nobody sees a change the log could still lose.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pycrdt import Array, Doc, Map, TransactionEvent, get_state, merge_updates

from ...shared import codec, schema
from ...shared.errors import DocumentTooLarge
from ...shared.permissions import can_write_doc
from ...shared.protocol import CloseCode, SyncStep
from ..identity import Identity
from ..metrics import Metrics
from ..store.db import WriteResult
from ..store.doclog import DocLog
from .awareness import AwarenessTable
from .guard import Guard

logger = logging.getLogger(__name__)

SERVER_ORIGIN = "proofroom-server"
_EMPTY_UPDATE = b"\x00\x00"


#: Called after each committed tick with the pins it touched: pin id -> its fields now
#: (status, author, created_at), or None if it no longer exists; and once after loading
#: with every pin and ``initial`` true.
PinListener = Callable[["Room", dict[str, dict[str, Any] | None], bool], None]


class Peer(Protocol):
    """What a room needs of a connection."""

    identity: Identity

    def send(self, message: bytes) -> None: ...
    def close_soon(self, code: int, reason: str) -> None: ...


@dataclass
class _ClientSync:
    conn: Peer
    message: codec.SyncMessage
    received: float


@dataclass
class _ServerWrite:
    fn: Callable[[Room], Any]
    future: asyncio.Future[Any]
    received: float = field(default_factory=time.perf_counter)


_STOP = object()


def new_document() -> tuple[Doc[Any], dict[str, Map[Any] | Array[Any]]]:
    """A document with the schema's roots typed."""
    doc: Doc[Any] = Doc()
    roots: dict[str, Map[Any] | Array[Any]] = {
        schema.META: doc.get(schema.META, type=Map),
        schema.PINS: doc.get(schema.PINS, type=Map),
        schema.LAYERS: doc.get(schema.LAYERS, type=Array),
        schema.JOBS: doc.get(schema.JOBS, type=Map),
    }
    return doc, roots


class Room:
    """A session's live document; created and driven by the RoomManager."""

    def __init__(
        self,
        session_id: str,
        doclog: DocLog,
        metrics: Metrics,
        *,
        max_doc_bytes: int,
        compact_after_updates: int,
        pin_listener: PinListener | None = None,
    ) -> None:
        self.session_id = session_id
        self.doc, self.roots = new_document()
        self.meta: Map[Any] = self.roots[schema.META]  # type: ignore[assignment]
        self.pins: Map[Any] = self.roots[schema.PINS]  # type: ignore[assignment]
        self.layers: Array[Any] = self.roots[schema.LAYERS]  # type: ignore[assignment]
        self.jobs: Map[Any] = self.roots[schema.JOBS]  # type: ignore[assignment]
        self.peers: set[Peer] = set()
        self.awareness = AwarenessTable()
        self.last_active = time.monotonic()
        #: Set when the document could not be persisted; the room must be reloaded.
        self.failed = False
        self._doclog = doclog
        self._metrics = metrics
        self._max_doc_bytes = max_doc_bytes
        self._compact_after = compact_after_updates
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._captured: list[bytes] = []
        self._tail_updates = 0
        self._doc_bytes = 0
        self._compaction: asyncio.Future[WriteResult] | None = None
        self._subscription = self.doc.observe(self._on_update)
        self._guard = Guard(self.doc, self.roots, self.meta)
        self._pin_listener = pin_listener
        self._touched_pins: set[str] = set()
        self._guard.on_pin_events = self._on_pins

    # -- loading --------------------------------------------------------------------------

    async def load(self) -> None:
        """Rebuild the document from its snapshot and the updates logged after it."""
        snapshot, tail = await self._doclog.load(self.session_id)
        with self.doc.transaction(origin=SERVER_ORIGIN):
            for update in ([snapshot] if snapshot else []) + tail:
                self.doc.apply_update(update)
        self._captured.clear()
        self._touched_pins = {str(k) for k in self.pins.keys()}
        self._report_pins(initial=True)
        self._tail_updates = len(tail)
        self._doc_bytes = len(snapshot or b"") + sum(len(u) for u in tail)

    def _on_update(self, event: TransactionEvent) -> None:
        update = event.update
        if update != _EMPTY_UPDATE:
            self._captured.append(update)

    def _on_pins(self, events: list[Any]) -> None:
        for event in events:
            path = list(event.path)
            if path:
                self._touched_pins.add(str(path[0]))
            else:
                self._touched_pins.update(str(key) for key in event.keys)

    def _report_pins(self, initial: bool = False) -> None:
        touched, self._touched_pins = self._touched_pins, set()
        if not touched or self._pin_listener is None:
            return
        summary: dict[str, dict[str, Any] | None] = {}
        for pin_id in touched:
            pin = self.pins.get(pin_id)
            summary[pin_id] = (
                {
                    key: pin.get(key)
                    for key in (schema.Pin.STATUS, schema.Pin.AUTHOR, schema.Pin.CREATED_AT)
                }
                if isinstance(pin, Map)
                else None
            )
        try:
            self._pin_listener(self, summary, initial)
        except Exception:
            logger.exception("pin listener failed in %s", self.session_id)

    def _take_captured(self) -> bytes | None:
        if not self._captured:
            return None
        captured, self._captured = self._captured, []
        return captured[0] if len(captured) == 1 else merge_updates(*captured)

    # -- entry points (called from connection handlers and services) ------------------------

    def submit_sync(self, conn: Peer, message: codec.SyncMessage) -> None:
        """Queue a client's sync message for the next tick."""
        self.last_active = time.monotonic()
        self._inbox.put_nowait(_ClientSync(conn, message, time.perf_counter()))

    async def server_write(self, fn: Callable[[Room], Any]) -> Any:
        """Run ``fn(room)`` as a server transaction; return its result once durable and sent."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_ServerWrite(fn, future))
        return await future

    def stop(self) -> None:
        self._inbox.put_nowait(_STOP)

    @property
    def idle(self) -> bool:
        return not self.peers and self._inbox.empty()

    # -- the tick -------------------------------------------------------------------------

    async def run(self) -> None:
        """Process ticks until :meth:`stop`."""
        while True:
            items = [await self._inbox.get()]
            while not self._inbox.empty():
                items.append(self._inbox.get_nowait())
            stopping = any(item is _STOP for item in items)
            await self._tick([item for item in items if item is not _STOP])
            if stopping:
                await self._flush_compaction()
                return

    async def _tick(self, items: list[_ClientSync | _ServerWrite]) -> None:
        # (origin connection or None, message for the others, message for the origin, received)
        outgoing: list[tuple[Peer | None, bytes | None, bytes | None, float]] = []
        direct: list[tuple[Peer, bytes]] = []
        results: list[tuple[_ServerWrite, Any, BaseException | None]] = []
        log: list[bytes] = []
        for item in items:
            if isinstance(item, _ServerWrite):
                try:
                    with self.doc.transaction(origin=SERVER_ORIGIN):
                        value = item.fn(self)
                    results.append((item, value, None))
                except Exception as exc:
                    results.append((item, None, exc))
                update = self._take_captured()
                if update is not None:
                    self._doc_bytes += len(update)
                    log.append(update)
                    outgoing.append((None, codec.sync_update(update), None, item.received))
            else:
                self._handle_sync(item, outgoing, direct, log)
        if log:
            try:
                await self._doclog.append(self.session_id, log)
            except Exception as exc:
                # Nothing of this tick was acknowledged: drop the connections that wrote it
                # so their clients resend on reconnect, and fail the server writes.
                logger.exception("could not persist %d updates of %s", len(log), self.session_id)
                self._touched_pins.clear()
                self._fail_tick(items, exc)
                return
            self._tail_updates += len(log)
            self._metrics.updates.inc(len(log))
        self._send(outgoing, direct)
        self._report_pins()
        for write, value, error in results:
            if not write.future.done():
                if error is None:
                    write.future.set_result(value)
                else:
                    write.future.set_exception(error)
        await self._maybe_compact()

    def _handle_sync(
        self,
        item: _ClientSync,
        outgoing: list[tuple[Peer | None, bytes | None, bytes | None, float]],
        direct: list[tuple[Peer, bytes]],
        log: list[bytes],
    ) -> None:
        conn, msg = item.conn, item.message
        if msg.step is SyncStep.STEP1:
            if conn not in self.peers:
                return  # it left while its message waited
            direct.append((conn, codec.sync_step2(self.doc.get_update(msg.payload))))
            return
        if msg.payload == _EMPTY_UPDATE:
            return
        if not can_write_doc(conn.identity.role):
            # A reconnecting viewer's step 2 carries its delete set even when it has
            # nothing new; only updates that would add something are refused out loud.
            if msg.step is SyncStep.UPDATE or self._adds_content(msg.payload):
                direct.append((conn, codec.permission_denied("read-only: viewers cannot edit")))
            return
        if self._doc_bytes + len(msg.payload) > self._max_doc_bytes:
            err = DocumentTooLarge(f"the document would exceed {self._max_doc_bytes} bytes")
            conn.close_soon(err.close_code, err.message)
            return
        try:
            reasons = self._guard.apply(msg.payload, conn.identity)
        except ValueError as exc:
            self._guard.settle(revert=False)
            self._captured.clear()
            conn.close_soon(CloseCode.BAD_MESSAGE, f"invalid update: {exc}"[:120])
            return
        accepted = self._take_captured()
        self._guard.settle(revert=bool(reasons))
        if not reasons:
            if accepted is not None:
                self._doc_bytes += len(accepted)
                log.append(accepted)
                outgoing.append((conn, codec.sync_update(accepted), None, item.received))
            return
        # The guard reverted the update: the sender needs the revert, everyone else the
        # update and its revert in one message, so they never see the forbidden state.
        reverted_update = self._take_captured()
        both = [u for u in (accepted, reverted_update) if u is not None]
        self._doc_bytes += sum(len(u) for u in both)
        log.extend(both)
        for_others = codec.sync_update(merge_updates(*both)) if both else None
        for_origin = codec.sync_update(reverted_update) if reverted_update else None
        outgoing.append((conn, for_others, for_origin, item.received))
        direct.append((conn, codec.permission_denied("; ".join(reasons)[:500])))
        self._metrics.denied.inc()
        logger.info(
            "reverted an update by %s in %s: %s", conn.identity.user_id, self.session_id, reasons
        )

    def _send(
        self,
        outgoing: list[tuple[Peer | None, bytes | None, bytes | None, float]],
        direct: list[tuple[Peer, bytes]],
    ) -> None:
        peers = list(self.peers)
        for origin, for_others, for_origin, received in outgoing:
            for peer in peers:
                if peer is origin:
                    if for_origin is not None:
                        peer.send(for_origin)
                elif for_others is not None:
                    peer.send(for_others)
            self._metrics.broadcast_latency.observe(time.perf_counter() - received)
        for peer, message in direct:
            if peer in self.peers:
                peer.send(message)

    def _fail_tick(self, items: list[_ClientSync | _ServerWrite], exc: BaseException) -> None:
        # The in-memory document is now ahead of the log. Drop it: the manager reloads the
        # room from the log on the next join, and reconnecting clients resend what is missing.
        self.failed = True
        for item in items:
            if isinstance(item, _ServerWrite) and not item.future.done():
                item.future.set_exception(exc)
        for peer in list(self.peers):
            peer.close_soon(CloseCode.INTERNAL_ERROR, "storage failure, please reconnect")

    def _adds_content(self, update: bytes) -> bool:
        try:
            theirs = codec.decode_state_vector(get_state(update))
        except (ValueError, codec.MalformedMessage):
            return True
        ours = codec.decode_state_vector(self.doc.get_state())
        return any(clock > ours.get(client, 0) for client, clock in theirs.items())

    # -- compaction -----------------------------------------------------------------------

    async def _maybe_compact(self) -> None:
        if self._compaction is not None and self._compaction.done():
            await self._flush_compaction()
        if self._tail_updates < self._compact_after or self._compaction is not None:
            return
        snapshot = self.doc.get_update()
        # Queued now, so it lands after this room's appends and before its next ones; the
        # room does not wait for it.
        self._compaction = self._doclog.compact(self.session_id, snapshot)
        self._tail_updates = 0
        self._doc_bytes = len(snapshot)

    async def _flush_compaction(self) -> None:
        if self._compaction is None:
            return
        try:
            await self._compaction
        except Exception:
            logger.exception("compaction of %s failed; the log stays as it was", self.session_id)
        self._compaction = None

    # -- reading --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The document as plain JSON."""
        return {name: root.to_py() for name, root in self.roots.items()}
