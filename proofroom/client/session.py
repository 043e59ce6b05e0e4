"""A live session document, synced with the server over the y-websocket protocol."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx
from pycrdt import Array, Doc, Map, TransactionEvent
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ..shared import codec, schema
from ..shared.protocol import CloseCode, MessageType, SyncStep

logger = logging.getLogger(__name__)


class SessionClient:
    """Joins ``/ws/{session}``, keeps :attr:`doc` synced, and exposes presence.

    ``async with SessionClient(url, session_id, token) as s`` connects and waits for the
    first sync. Changes made to :attr:`doc` (or its roots) are sent as they happen; edits
    made while disconnected are merged on :meth:`connect` like any Yjs client's.
    """

    def __init__(
        self, base_url: str, session_id: str, token: str, *, max_size: int | None = None
    ) -> None:
        url = httpx.URL(base_url)
        scheme = "wss" if url.scheme == "https" else "ws"
        self.url = str(
            url.copy_with(scheme=scheme, path=f"/ws/{session_id}", query=None).copy_merge_params(
                {"token": token}
            )
        )
        self.session_id = session_id
        self._new_document()
        #: Other participants' awareness states by client id.
        self.peers: dict[int, dict[str, Any]] = {}
        #: Reasons of every permission-denied message received.
        self.denied: list[str] = []
        #: (code, reason) of the last close, once closed.
        self.closed: tuple[int | None, str] | None = None
        self.synced = asyncio.Event()
        self._max_size = max_size
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._awareness_clock = itertools.count()
        self._awareness_state: dict[str, Any] | None = None
        self._applying_remote = False
        #: Set when the server said this copy cannot get back in sync (close 4409).
        self._stale = False
        #: The copy that replaces :attr:`doc` once its sync arrives, after a refusal.
        self._fresh: Doc[Any] | None = None
        #: Which copy each sync step 1 sent so far is for, oldest first (the server
        #: answers them in order).
        self._awaiting: list[Doc[Any]] = []

    def _new_document(self) -> None:
        """Start over from an empty document (what the server holds arrives in its sync)."""
        self._install(Doc())

    def _install(self, doc: Doc[Any]) -> None:
        self.doc: Doc[Any] = doc
        self.meta = doc.get(schema.META, type=Map)
        self.pins = doc.get(schema.PINS, type=Map)
        self.layers = doc.get(schema.LAYERS, type=Array)
        self.jobs = doc.get(schema.JOBS, type=Map)
        self.revisions = doc.get(schema.REVISIONS, type=Array)
        self._subscription = doc.observe(self._on_local_update)

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> SessionClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def connect(self, *, timeout: float = 10.0, wait_synced: bool = True) -> None:
        """Open the socket and sync; raise ConnectionError if the server closes it first."""
        self.synced.clear()
        if self._stale or self._fresh is not None:
            # This copy holds a change the server refused: start from a fresh one.
            self._stale = False
            self._new_document()
        self.closed = None
        self._fresh = None
        self._awaiting = []
        self._ws = await connect(
            self.url, max_size=self._max_size, compression=None, open_timeout=timeout
        )
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(self._ws))
        await self._request_sync(self.doc)
        if self._awareness_state is not None:
            await self._send_awareness()
        if wait_synced:
            await self.wait_for(
                lambda: self.synced.is_set() or self.closed is not None, timeout=timeout
            )
            if not self.synced.is_set():
                raise ConnectionError(f"closed before sync: {self.closed}")

    async def disconnect(self) -> None:
        """Close the socket; the document stays and keeps local edits."""
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    @property
    def connected(self) -> bool:
        return self._ws is not None and self.closed is None

    # -- sending --------------------------------------------------------------------------

    async def _send(self, message: bytes) -> None:
        if self._ws is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(message)

    def _on_local_update(self, event: TransactionEvent) -> None:
        if self._applying_remote or self._ws is None or self.closed is not None:
            return
        # Offline edits are not queued: the next connect's sync sends the difference.
        message = codec.sync_update(event.update)
        asyncio.get_running_loop().create_task(self._send(message))

    async def flush(self) -> None:
        """Wait until every message queued so far has been handed to the socket."""
        await asyncio.sleep(0)
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.ping()

    async def send_raw(self, frame: bytes | str) -> None:
        """Send an arbitrary frame (for tests of the server's input checks)."""
        assert self._ws is not None
        await self._ws.send(frame)

    # -- awareness ------------------------------------------------------------------------

    async def set_awareness(self, state: dict[str, Any] | None) -> None:
        """Publish this participant's presence (``None`` leaves)."""
        self._awareness_state = state
        await self._send_awareness()

    async def _send_awareness(self) -> None:
        clock = next(self._awareness_clock) + 1
        state = "null" if self._awareness_state is None else json.dumps(self._awareness_state)
        await self._send(codec.encode_awareness([(self.doc.client_id, clock, state)]))

    # -- receiving ------------------------------------------------------------------------

    async def _read_loop(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                if isinstance(frame, str):
                    continue
                kind, content = codec.parse_frame(frame, from_server=True)
                if kind is MessageType.SYNC:
                    await self._on_sync(content)
                elif kind is MessageType.AWARENESS:
                    for entry in content:
                        if entry.client_id == self.doc.client_id:
                            continue
                        if entry.state is None:
                            self.peers.pop(entry.client_id, None)
                        else:
                            self.peers[entry.client_id] = entry.state
                elif kind is MessageType.AUTH:
                    self.denied.append(content)
                    await self._start_over()
                elif kind is MessageType.QUERY_AWARENESS and self._awareness_state is not None:
                    await self._send_awareness()
                await self._notify()
        except ConnectionClosed:
            pass
        finally:
            self.closed = (ws.close_code, ws.close_reason or "")
            if ws.close_code == CloseCode.OUT_OF_SYNC:
                self._stale = True  # the next connect starts from a fresh copy
            await self._notify()

    async def _request_sync(self, doc: Doc[Any]) -> None:
        self._awaiting.append(doc)
        await self._send(codec.sync_step1(doc.get_state()))

    async def _start_over(self) -> None:
        """The server refused a change of ours: sync a fresh copy to replace this one.

        A refused change stays in a CRDT document for good (there is no rollback), and so
        would anything built on it; a fresh copy of the server's truth is the way back.
        The current copy stays in place, and live, until the fresh one has arrived; then
        :attr:`doc` and its roots are new objects.
        """
        if self._fresh is None:
            self._fresh = Doc()
            await self._request_sync(self._fresh)

    def _apply_remote(self, doc: Doc[Any], update: bytes) -> None:
        # Doc-level observers do not see the transaction origin, hence the flag.
        self._applying_remote = True
        try:
            doc.apply_update(update)
        finally:
            self._applying_remote = False

    async def _on_sync(self, message: codec.SyncMessage) -> None:
        if message.step is SyncStep.STEP1:
            await self._send(codec.sync_step2(self.doc.get_update(message.payload)))
            return
        if message.step is SyncStep.UPDATE:
            self._apply_remote(self.doc, message.payload)
            if self._fresh is not None:
                self._apply_remote(self._fresh, message.payload)
            return
        target = self._awaiting.pop(0) if self._awaiting else self.doc
        self._apply_remote(target, message.payload)
        if target is self._fresh:
            old_client = self.doc.client_id
            self._fresh = None
            self._install(target)
            # What this copy's writer sent while the fresh copy was on its way.
            await self._request_sync(target)
            if self._awareness_state is not None:
                clock = next(self._awareness_clock) + 1
                await self._send(codec.encode_awareness([(old_client, clock, "null")]))
                await self._send_awareness()
        elif target is self.doc:
            self.synced.set()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], Any], *, timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` is true, re-checking after every received message."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    def state(self) -> dict[str, Any]:
        """The document as plain JSON."""
        return {
            schema.META: self.meta.to_py(),
            schema.PINS: self.pins.to_py(),
            schema.LAYERS: self.layers.to_py(),
            schema.JOBS: self.jobs.to_py(),
            schema.REVISIONS: self.revisions.to_py(),
        }

    # -- writing helpers ------------------------------------------------------------------

    def add_pin(
        self,
        pin_id: str,
        *,
        x: float,
        y: float,
        text: str,
        author: str,
        region: list[float] | None = None,
        revision: str | None = None,
        frame: int | None = None,
        frames: list[int] | None = None,
    ) -> None:
        """Create an open pin with an empty thread (on ``revision``, at ``frame`` of a clip)."""
        fields: dict[str, Any] = {
            schema.Pin.X: x,
            schema.Pin.Y: y,
            schema.Pin.AUTHOR: author,
            schema.Pin.TEXT: text,
            schema.Pin.STATUS: "open",
            schema.Pin.CREATED_AT: time.time(),
            schema.Pin.THREAD: Array(),
        }
        if region is not None:
            fields[schema.Pin.REGION] = region
        for key, value in (
            (schema.Pin.REVISION, revision),
            (schema.Pin.FRAME, frame),
            (schema.Pin.FRAMES, frames),
        ):
            if value is not None:
                fields[key] = value
        self.pins[pin_id] = Map(fields)

    def reply(self, pin_id: str, comment_id: str, *, text: str, author: str) -> None:
        """Append a comment to a pin's thread."""
        thread: Array[Any] = self.pins[pin_id][schema.Pin.THREAD]
        thread.append(
            Map(
                {
                    schema.Comment.ID: comment_id,
                    schema.Comment.AUTHOR: author,
                    schema.Comment.TEXT: text,
                    schema.Comment.AT: time.time(),
                }
            )
        )
