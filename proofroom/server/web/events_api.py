"""``GET /api/events``: review events as a server-sent event stream.

A browser's ``EventSource`` cannot send an ``Authorization`` header, and a token in a URL
ends up in logs and histories: ``POST /api/events/ticket`` (with the token in the header)
answers a ticket that opens one stream, once, within a minute, as the same person and for
nothing else. ``?token=`` still works for scripts.

The stream ends when the client goes away, when the server shuts down (uvicorn waits for
open responses before it stops, so the app is told through the lifespan state, see
``app.uvicorn_config``), or when the subscriber falls behind the event bus; the last two
are announced with a final event.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import anyio
from anyio import CancelScope
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ...shared.errors import BadRequest, Forbidden, RateLimited, Unauthorized
from ..review.events import Event, EventBus
from .common import identity, services, token_of

#: Lifespan-state key of the asyncio.Event set when the server starts shutting down.
DRAINING = "proofroom_draining"
#: How long a client should wait before reconnecting (the SSE ``retry:`` field), in ms.
RETRY_MS = 3000
MAX_TYPES = 32
#: How long a stream ticket is good for, in seconds (it is used at once, by the page that
#: asked for it), and how many may be outstanding.
TICKET_SECONDS = 60.0
MAX_TICKETS = 10_000
TICKET_PREFIX = "pr_ticket_"


class StreamTickets:
    """Single-use, short-lived tickets for ``GET /api/events?ticket=`` (in this process).

    A ticket stands for the token that asked for it, which is resolved again when the
    ticket is used: a revoked or expired invite opens no stream through a ticket either.
    """

    def __init__(self, ttl: float = TICKET_SECONDS, limit: int = MAX_TICKETS) -> None:
        self.ttl = ttl
        self.limit = limit
        self._tickets: dict[str, tuple[float, str]] = {}

    def issue(self, token: str, now: float | None = None) -> str:
        """A new ticket that opens one stream as ``token``'s holder."""
        now = time.monotonic() if now is None else now
        self._tickets = {k: v for k, v in self._tickets.items() if v[0] > now}
        if len(self._tickets) >= self.limit:
            raise RateLimited("too many event-stream tickets outstanding; try again soon")
        ticket = TICKET_PREFIX + secrets.token_urlsafe(24)
        self._tickets[ticket] = (now + self.ttl, token)
        return ticket

    def redeem(self, ticket: str, now: float | None = None) -> str:
        """The token a ticket was issued for; a ticket opens one stream only."""
        now = time.monotonic() if now is None else now
        entry = self._tickets.pop(ticket, None)
        if entry is None or entry[0] <= now:
            raise Unauthorized("this event-stream ticket is unknown, used or expired")
        return entry[1]


def tickets(request: Request) -> StreamTickets:
    """The app's ticket book (made on first use)."""
    state = request.app.state
    book: StreamTickets | None = getattr(state, "event_tickets", None)
    if book is None:
        book = state.event_tickets = StreamTickets()
    return book


def sse_frame(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One SSE message; JSON data has no raw newlines, so one ``data:`` line is enough."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    payload = json.dumps(data, separators=(",", ":"))
    return f"{head}event: {event}\ndata: {payload}\n\n".encode()


def type_filter(raw: str | None) -> Callable[[str], bool]:
    """``types=a,b`` (``job.*`` matches every job event); everything when empty."""
    wanted = [t.strip() for t in (raw or "").split(",") if t.strip()]
    if len(wanted) > MAX_TYPES:
        raise BadRequest(f"at most {MAX_TYPES} event types")
    if not wanted:
        return lambda _: True
    exact = {t for t in wanted if not t.endswith(".*")}
    prefixes = tuple(t[:-1] for t in wanted if t.endswith(".*"))
    return lambda kind: kind in exact or kind.startswith(prefixes)


class EventStreamResponse(Response):
    """Streams the bus's events that ``accept`` lets through, with heartbeats."""

    media_type = "text/event-stream"

    def __init__(
        self,
        bus: EventBus,
        accept: Callable[[Event], bool],
        *,
        heartbeat: float,
        draining: asyncio.Event | None,
        hello: dict[str, Any],
    ) -> None:
        # No body, hence no Content-Length (Response.__init__ would declare 0 bytes).
        self.status_code = 200
        self.background = None
        self.init_headers(
            {
                "Cache-Control": "no-cache",
                # Ask reverse proxies (nginx) not to buffer the stream.
                "X-Accel-Buffering": "no",
            }
        )
        self.bus = bus
        self.accept = accept
        self.heartbeat = heartbeat
        self.draining = draining
        self.hello = hello

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self.bus.subscribe() as queue:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await self._send(send, f"retry: {RETRY_MS}\n\n".encode())
            await self._send(send, sse_frame("ready", self.hello))
            final: bytes | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._until_disconnect, receive, tg.cancel_scope)
                if self.draining is not None:
                    tg.start_soon(self._until_draining, self.draining, tg.cancel_scope)
                final = await self._pump(queue, send)
                tg.cancel_scope.cancel()
            if final is None and self.draining is not None and self.draining.is_set():
                final = sse_frame("closing", {"reason": "the server is shutting down"})
            if final is not None:
                await self._send(send, final)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _send(send: Send, chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def _pump(self, queue: asyncio.Queue[Event | None], send: Send) -> bytes:
        """Forward events until the bus cuts this subscriber off; return the last words."""
        while True:
            got: Event | bool | None = False
            with anyio.move_on_after(self.heartbeat):
                got = await queue.get()
            if got is False:
                await self._send(send, b": heartbeat\n\n")
            elif got is None:
                return sse_frame(
                    "dropped",
                    {"reason": "this client fell behind the event stream; reconnect"},
                )
            elif isinstance(got, Event) and self.accept(got):
                await self._send(send, sse_frame(got.type, got.to_json(), got.id))

    @staticmethod
    async def _until_disconnect(receive: Receive, scope: CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    @staticmethod
    async def _until_draining(draining: asyncio.Event, scope: CancelScope) -> None:
        await draining.wait()
        scope.cancel()


async def issue_ticket(request: Request) -> Response:
    """``POST /api/events/ticket``: a ticket for one ``EventSource`` (see the docstring)."""
    await identity(request)  # a token that works (a link's own token does not)
    token = token_of(request)
    assert token is not None
    ticket = tickets(request).issue(token)
    return JSONResponse({"ticket": ticket, "expires_in": TICKET_SECONDS}, status_code=201)


async def event_stream(request: Request) -> Response:
    ticket = request.query_params.get("ticket")
    if ticket is not None:
        if request.query_params.get("token") or request.headers.get("authorization"):
            raise BadRequest("send a ticket or a token, not both")
        actor = await services(request).auth.resolve(tickets(request).redeem(ticket))
    else:
        actor = await identity(request)
    svc = services(request)
    wanted = type_filter(request.query_params.get("types"))
    session = request.query_params.get("session") or None
    if not actor.is_admin:
        if session is not None and session != actor.session_id:
            raise Forbidden("this token belongs to another session")
        session = actor.session_id

    def accept(event: Event) -> bool:
        return (session is None or event.session_id == session) and wanted(event.type)

    state = request.scope.get("state") or {}
    return EventStreamResponse(
        svc.bus,
        accept,
        heartbeat=svc.settings.events_heartbeat_seconds,
        draining=state.get(DRAINING),
        hello={"session": session, "types": request.query_params.get("types") or None},
    )


routes = [
    Route("/api/events", event_stream),
    Route("/api/events/ticket", issue_ticket, methods=["POST"]),
]
