"""One live session: its document, its connections, and the pipeline that fans out changes.

Every document change is applied the moment it arrives (a client's sync message from its
read loop, a server write from a service), checked by the write guard, and handed to the
durable log at once. What it produces for others (broadcasts, replies, reverts, a server
write's result) waits in the room's outbox until the log has committed every change handed
over before it, and is sent from the commit callback itself. Nobody sees a change the log
could still lose, and a change waits for one commit, not for a queue of tasks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import anyio
import anyio.to_thread
from pycrdt import Array, Map, TransactionEvent, merge_updates

from ...shared import codec, schema
from ...shared.errors import DocumentTooLarge, RoomUnavailable
from ...shared.permissions import can_write_doc
from ...shared.protocol import CloseCode, SyncStep
from ..identity import Identity
from ..metrics import Metrics
from ..store.db import Statement, WriteResult
from ..store.doclog import DocLog
from .awareness import AwarenessTable, PresenceLimits
from .compaction import Compactor
from .guard import LISTENED_PIN_FIELDS, Guard, Verdict, arrays_in
from .limits import TokenBucket

logger = logging.getLogger(__name__)

SERVER_ORIGIN = "proofroom-server"
_EMPTY_UPDATE = b"\x00\x00"


#: Called after each committed tick with the pins it touched: pin id -> its fields now
#: (status, author, created_at), or None if it no longer exists; and once after loading
#: with every pin and ``initial`` true.
PinListener = Callable[["Room", dict[str, dict[str, Any] | None], bool], None]


#: Refused changes a connection may send before it is closed as out of sync.
MAX_REFUSALS = 32
#: Refusals per second a connection may cause on average (each may rebuild the guard's
#: replica, which costs the room about 20 ms per MB of document: scripts/bench_guard.py),
#: and in a burst; past that it is closed as rate limited.
REFUSALS_PER_SECOND = 1.0
REFUSALS_BURST = 10


class Peer(Protocol):
    """What a room needs of a connection."""

    identity: Identity
    #: Changes of this connection the guard refused so far.
    refusals: int
    #: Spent once per refusal (:data:`REFUSALS_PER_SECOND`).
    refusal_tokens: TokenBucket

    def send(self, message: bytes) -> None: ...
    def close_soon(self, code: int, reason: str) -> None: ...


class _Outgoing:
    """Something to send (or settle) once the log holds every change before it."""

    __slots__ = (
        "after",
        "close",
        "direct",
        "for_others",
        "origin",
        "received",
        "write",
    )

    def __init__(
        self,
        after: int,
        *,
        origin: Peer | None = None,
        for_others: bytes | None = None,
        direct: tuple[Peer, bytes] | None = None,
        received: float = 0.0,
        write: tuple[asyncio.Future[Any], Any, BaseException | None] | None = None,
        close: tuple[Peer, int, str] | None = None,
    ) -> None:
        #: The number of log operations that must have committed first.
        self.after = after
        self.origin = origin
        self.for_others = for_others
        self.direct = direct
        self.received = received
        self.write = write
        #: A connection to close once what came before has been sent.
        self.close = close


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
        presence: PresenceLimits | None = None,
        native_events: bool = True,
        compactor: Compactor | None = None,
    ) -> None:
        self.session_id = session_id
        self._captured: list[bytes] = []
        #: Owns the document: a refused change replaces it (see guard.py), and the room
        #: binds to the new one.
        self._guard = Guard(self._accepted_state, native_events_enabled=native_events)
        self._guard.on_reset = self._bind
        self._bind()
        self.peers: set[Peer] = set()
        self.awareness = AwarenessTable(presence)
        self.last_active = time.monotonic()
        #: Set when the document could not be persisted; the room must be reloaded.
        self.failed = False
        self._doclog = doclog
        self._metrics = metrics
        self._max_doc_bytes = max_doc_bytes
        self._compact_after = compact_after_updates
        # What the log holds, as bytes, for compaction to merge off the loop: its snapshot,
        # the updates handed to it since (oldest first), and how many of those committed.
        self._snapshot: bytes | None = None
        self._tail: list[bytes] = []
        self._tail_committed = 0
        self._compactor = compactor
        #: After a failed merge, the tail length at which to try again (not at every commit).
        self._compact_retry_at = 0
        self._doc_bytes = 0
        # Log operations handed to the database, and how many of them have committed;
        # the outbox holds what waits for them, in order.
        self._submitted = 0
        self._committed = 0
        self._outbox: deque[_Outgoing] = deque()
        self._compacting = False
        self._stopped = False
        self._drained = asyncio.Event()
        self._drained.set()
        self._pin_listener = pin_listener
        self._touched_pins: set[str] = set()
        self._guard.on_pins_touched = self._on_pins_touched

    # -- loading --------------------------------------------------------------------------

    async def load(self) -> None:
        """Rebuild the document from its snapshot and the updates logged after it."""
        snapshot, tail = await self._doclog.load(self.session_id)
        self._snapshot, self._tail, self._tail_committed = snapshot, tail, len(tail)
        # The log's bytes as one update: what a rebuild after a refusal starts from too.
        state = self._accepted_state()
        arrays = await anyio.to_thread.run_sync(arrays_in, state)
        owners = await self._doclog.client_owners(self.session_id)
        self._guard.load(state, arrays, owners)
        self._bind()
        self._touched_pins = {str(k) for k in self.pins.keys()}
        self._report_pins(initial=True)
        self._doc_bytes = len(snapshot or b"") + sum(len(u) for u in tail)

    def _bind(self) -> None:
        """Point at the guard's document (a new one after load and after each refusal)."""
        self.doc = self._guard.doc
        self.roots = self._guard.roots
        self.meta: Map[Any] = self.roots[schema.META]  # type: ignore[assignment]
        self.pins: Map[Any] = self.roots[schema.PINS]  # type: ignore[assignment]
        self.layers: Array[Any] = self.roots[schema.LAYERS]  # type: ignore[assignment]
        self.jobs: Map[Any] = self.roots[schema.JOBS]  # type: ignore[assignment]
        self.revisions: Array[Any] = self.roots[schema.REVISIONS]  # type: ignore[assignment]
        self._subscription = self.doc.observe(self._on_update)
        self._captured.clear()

    def _accepted_state(self) -> bytes:
        """Every change accepted so far, as one update: the snapshot and the log's tail."""
        parts = ([self._snapshot] if self._snapshot else []) + self._tail
        if not parts:
            return b""
        return parts[0] if len(parts) == 1 else merge_updates(*parts)

    def _on_update(self, event: TransactionEvent) -> None:
        update = event.update
        if update != _EMPTY_UPDATE:
            self._captured.append(update)

    def _on_pins_touched(self, pin_ids: list[str]) -> None:
        self._touched_pins.update(pin_ids)

    def _report_pins(self, initial: bool = False) -> None:
        touched, self._touched_pins = self._touched_pins, set()
        if not touched or self._pin_listener is None:
            return
        summary: dict[str, dict[str, Any] | None] = {}
        with self.doc.transaction():  # one transaction for all the reads
            for pin_id in touched:
                pin = self.pins.get(pin_id)
                if isinstance(pin, Map):
                    summary[pin_id] = {key: pin.get(key) for key in LISTENED_PIN_FIELDS}
                else:
                    summary[pin_id] = None
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
        """Apply a client's sync message now; what it produces is sent once durable."""
        if self._stopped or self.failed:
            return  # the connection is being closed; its client resends on reconnect
        self.last_active = time.monotonic()
        self._handle_sync(conn, message, time.perf_counter())

    async def server_write(
        self,
        fn: Callable[[Room], Any],
        statements: Callable[[Any], Sequence[Statement]] | None = None,
    ) -> Any:
        """Run ``fn(room)`` as a server transaction; return its result once durable and sent.

        ``statements(result)``, if given, is SQL (the audit row of the change) committed in
        the same transaction as the document update: neither is stored without the other,
        and if they fail the room fails as for any storage error (nobody sees the change).
        """
        if self._stopped or self.failed:
            raise RoomUnavailable("the session's document was just unloaded; try again")
        received = time.perf_counter()
        self.last_active = time.monotonic()
        value: Any = None
        error: BaseException | None = None
        extra: Sequence[Statement] = ()
        try:
            with self.doc.transaction(origin=SERVER_ORIGIN):
                value = fn(self)
            if statements is not None:
                extra = statements(value)
        except Exception as exc:
            error = exc
        update = self._take_captured()
        if update is not None:
            self._guard.absorb(update)
            extra = [*extra, *self._claim_statements()]
        if update is not None or extra:
            self._log([update] if update is not None else [], extra)
        if update is not None:
            self._emit(
                _Outgoing(self._submitted, for_others=codec.sync_update(update), received=received)
            )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._emit(_Outgoing(self._submitted, write=(future, value, error)))
        return await future

    def stop(self) -> None:
        """Take no more changes; :meth:`drained` tells when the last one is durable."""
        self._stopped = True

    async def drained(self) -> None:
        """Wait until everything handed to the log has committed (or failed)."""
        await self._drained.wait()

    @property
    def guard_native_events(self) -> bool:
        """Whether this room's write guard takes pycrdt's native events (a fast path)."""
        return self._guard.native_events

    @property
    def idle(self) -> bool:
        return not self.peers and self._drained.is_set()

    # -- applying -------------------------------------------------------------------------

    def _handle_sync(self, conn: Peer, msg: codec.SyncMessage, received: float) -> None:
        if msg.step is SyncStep.STEP1:
            if conn in self.peers:
                try:
                    codec.read_state_vector(msg.payload)
                    reply = codec.sync_step2(self.doc.get_update(msg.payload))
                except (codec.MalformedMessage, ValueError) as exc:
                    conn.close_soon(CloseCode.BAD_MESSAGE, f"invalid state vector: {exc}"[:120])
                    return
                self._emit(_Outgoing(self._submitted, direct=(conn, reply)))
            return
        if msg.payload == _EMPTY_UPDATE:
            return
        if not can_write_doc(conn.identity.role):
            # A reconnecting viewer's step 2 carries its delete set even when it has
            # nothing new; only updates that would add something are refused out loud.
            if msg.step is SyncStep.UPDATE or self._guard.adds_content(msg.payload):
                denied = codec.permission_denied("read-only: viewers cannot edit")
                self._emit(_Outgoing(self._submitted, direct=(conn, denied)))
            return
        if self._doc_bytes + len(msg.payload) > self._max_doc_bytes:
            err = DocumentTooLarge(f"the document would exceed {self._max_doc_bytes} bytes")
            conn.close_soon(err.close_code, err.message)
            return
        try:
            verdict = self._guard.check(msg.payload, conn.identity)
        except codec.MalformedMessage as exc:
            conn.close_soon(CloseCode.BAD_MESSAGE, f"invalid update: {exc.message}"[:120])
            return
        if not verdict.accepted:
            self._refuse(conn, msg, verdict)
            return
        accepted = self._take_captured()
        if accepted is not None:
            self._log([accepted], self._claim_statements())
            self._emit(
                _Outgoing(
                    self._submitted,
                    origin=conn,
                    for_others=codec.sync_update(accepted),
                    received=received,
                )
            )

    def _refuse(self, conn: Peer, msg: codec.SyncMessage, verdict: Verdict) -> None:
        """Tell the writer why; close it if its copy cannot get back in sync by itself.

        Nothing of a refused update reaches the live document, so there is nothing to
        revert or to send anyone else. The writer's own copy still holds the change: the
        project's clients drop their copy and sync again when told. A client that cannot
        (a stock Yjs client cannot undo a deletion, and its sync step 2 repeats the change
        at every reconnect), or that keeps building on what was refused, is closed with
        OUT_OF_SYNC rather than left stalled (an update that builds on a refused change
        can never be applied; answering it with refusals would loop).
        """
        conn.refusals += 1
        self._metrics.denied.inc()
        reason = "; ".join(verdict.reasons)[:500]
        close: tuple[Peer, int, str] | None = None
        if not conn.refusal_tokens.take():
            close = (conn, CloseCode.RATE_LIMITED, "too many refused changes per second")
        elif verdict.out_of_sync:
            close = (conn, CloseCode.OUT_OF_SYNC, reason)
        elif msg.step is SyncStep.STEP2:
            close = (conn, CloseCode.OUT_OF_SYNC, f"your copy holds a refused change: {reason}")
        elif conn.refusals > MAX_REFUSALS:
            close = (conn, CloseCode.OUT_OF_SYNC, "too many refused changes; reload")
        self._emit(
            _Outgoing(
                self._submitted,
                direct=(conn, codec.permission_denied(reason)),
                close=close,
            )
        )
        logger.info(
            "refused an update by %s in %s: %s", conn.identity.user_id, self.session_id, reason
        )

    # -- the log and the outbox -------------------------------------------------------------

    def _log(self, updates: list[bytes], statements: Sequence[Statement] = ()) -> None:
        """Hand updates (and SQL that commits with them) to the log as this room's next op."""
        self._next_operation()
        self._doc_bytes += sum(len(u) for u in updates)
        self._tail.extend(updates)
        self._doclog.append(
            self.session_id, updates, self._committed_callback(len(updates)), statements
        )

    def _claim_statements(self) -> list[Statement]:
        """SQL storing the client ids the last change was the first to write with."""
        claims = self._guard.take_claims()
        return DocLog.claim_statements(self.session_id, claims) if claims else []

    def _next_operation(self) -> None:
        """Count one more log operation in flight; the room is not drained until it settles."""
        self._submitted += 1
        self._drained.clear()

    def _committed_callback(self, count: int) -> Callable[[WriteResult | BaseException], None]:
        def done(outcome: WriteResult | BaseException) -> None:
            if isinstance(outcome, BaseException):
                self._fail(outcome)
            else:
                self._metrics.updates.inc(count)
                self._tail_committed += count
            self._advance()

        return done

    def _emit(self, item: _Outgoing) -> None:
        if not self._outbox and item.after <= self._committed:
            self._release(item)
        else:
            self._outbox.append(item)

    def _advance(self) -> None:
        """One more log operation is settled: release what waited for it."""
        self._committed += 1
        outbox = self._outbox
        while outbox and outbox[0].after <= self._committed:
            self._release(outbox.popleft())
        if not self.failed:
            if self._committed == self._submitted:
                # Caught up: the document holds nothing the log could still lose.
                self._report_pins()
            self._maybe_compact()
        if self._committed == self._submitted and not self._compacting:
            self._drained.set()

    def _release(self, item: _Outgoing) -> None:
        if item.write is not None:
            future, value, error = item.write
            if not future.done():
                if error is None:
                    future.set_result(value)
                else:
                    future.set_exception(error)
        if item.for_others is not None:
            origin, for_others = item.origin, item.for_others
            for peer in list(self.peers):
                if peer is not origin:
                    peer.send(for_others)
            if item.received:
                self._metrics.broadcast_latency.observe(time.perf_counter() - item.received)
        if item.direct is not None:
            peer, message = item.direct
            if peer in self.peers:
                peer.send(message)
        if item.close is not None:
            peer, code, reason = item.close
            peer.close_soon(code, reason)

    def _fail(self, exc: BaseException) -> None:
        # The in-memory document is now ahead of the log. Drop it: the manager reloads the
        # room from the log on the next join, and reconnecting clients resend what is
        # missing. Nothing that waited for the log is sent; server writes fail.
        if not self.failed:
            logger.error("could not persist updates of %s: %r", self.session_id, exc)
            for peer in list(self.peers):
                peer.close_soon(CloseCode.INTERNAL_ERROR, "storage failure, please reconnect")
        self.failed = True
        self._touched_pins.clear()
        while self._outbox:
            item = self._outbox.popleft()
            if item.write is not None and not item.write[0].done():
                item.write[0].set_exception(
                    RoomUnavailable("the change could not be stored; try again")
                )

    # -- compaction -----------------------------------------------------------------------

    def _maybe_compact(self) -> None:
        if self._compacting or self._compactor is None:
            return
        count = self._tail_committed
        if count < max(self._compact_after, self._compact_retry_at):
            return
        # The stored snapshot and the oldest ``count`` logged updates (all committed) are
        # exactly what the log holds up to now; they merge off the loop while the room
        # goes on, and only they are replaced: what is logged meanwhile stays in the tail.
        parts = ([self._snapshot] if self._snapshot else []) + self._tail[:count]
        self._compacting = True
        self._drained.clear()  # the room unloads only once the merge has settled too
        self._compactor.start(parts, lambda merged: self._merged(merged, count))

    def _merged(self, merged: bytes | BaseException, count: int) -> None:
        if isinstance(merged, BaseException) or self.failed:
            if isinstance(merged, BaseException):
                logger.error("merging the log of %s failed: %r", self.session_id, merged)
                self._compact_retry_at = count + self._compact_after
            self._compacting = False
            if self._committed == self._submitted:
                self._drained.set()
            return
        self._next_operation()
        self._doclog.compact(
            self.session_id,
            merged,
            count,
            lambda outcome: self._compacted(outcome, merged, count),
        )

    def _compacted(self, outcome: WriteResult | BaseException, snapshot: bytes, count: int) -> None:
        self._compacting = False
        if isinstance(outcome, BaseException):
            logger.error(
                "compaction of %s failed; the log stays as it was: %r", self.session_id, outcome
            )
            self._compact_retry_at = count + self._compact_after
        else:
            self._compact_retry_at = 0
            self._snapshot = snapshot
            del self._tail[:count]
            self._tail_committed -= count
            self._doc_bytes = len(snapshot) + sum(len(u) for u in self._tail)
        self._advance()

    # -- reading --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The document as plain JSON."""
        return {name: root.to_py() for name, root in self.roots.items()}
