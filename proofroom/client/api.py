"""The HTTP API of a Proofroom server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from .events import ServerEvent, parse_sse


class ApiError(Exception):
    """An error response: its HTTP status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class ApiClient:
    """``async with ApiClient(url, token) as api`` — one method per endpoint."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                err = response.json()["error"]
                raise ApiError(response.status_code, err["code"], err["message"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(response.status_code, "http_error", response.text[:200]) from None
        return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        return response.json() if response.content else None

    async def create_session(
        self, image: bytes, *, title: str = "", filename: str = "image.png"
    ) -> dict[str, Any]:
        return await self.json(  # type: ignore[no-any-return]
            "POST", "/api/sessions", files={"image": (filename, image)}, data={"title": title}
        )

    async def list_sessions(self) -> list[dict[str, Any]]:
        return (await self.json("GET", "/api/sessions"))["sessions"]  # type: ignore[no-any-return]

    async def get_session(self, session_id: str) -> dict[str, Any]:
        return await self.json("GET", f"/api/sessions/{session_id}")  # type: ignore[no-any-return]

    async def create_invite(
        self,
        session_id: str,
        role: str,
        name: str = "",
        expires_in: float | None = None,
        *,
        kind: str = "personal",
    ) -> dict[str, Any]:
        """A named invite (``kind="personal"``: its token is one person's) or a role link
        (``kind="link"``: whoever opens it joins under their own name)."""
        body = {"role": role, "name": name, "expires_in": expires_in, "kind": kind}
        return await self.json(  # type: ignore[no-any-return]
            "POST", f"/api/sessions/{session_id}/invites", json=body
        )

    async def join(self, name: str, email: str | None = None) -> dict[str, Any]:
        """Join through the role link whose token this client holds: a new participant.

        Answers ``{token, user_id, name, email, role, session, url}``; the link's token is
        good for nothing else, so use the answer's ``token`` from here on.
        """
        body: dict[str, Any] = {"name": name}
        if email is not None:
            body["email"] = email
        return await self.json("POST", "/api/join", json=body)  # type: ignore[no-any-return]

    async def list_invites(self, session_id: str) -> list[dict[str, Any]]:
        body = await self.json("GET", f"/api/sessions/{session_id}/invites")
        return body["invites"]  # type: ignore[no-any-return]

    async def revoke_invite(self, session_id: str, invite_id: str) -> None:
        await self.request("DELETE", f"/api/sessions/{session_id}/invites/{invite_id}")

    async def whoami(self) -> dict[str, Any]:
        return await self.json("GET", "/api/whoami")  # type: ignore[no-any-return]

    async def blob(self, blob_id: str) -> bytes:
        return (await self.request("GET", f"/blobs/{blob_id}")).content

    async def producer(self, **filters: Any) -> dict[str, Any]:
        """The producer's view: ``state``, ``q``, ``since``, ``until``, ``sort``, ``limit``."""
        params = {k: v for k, v in filters.items() if v is not None}
        return await self.json("GET", "/api/producer", params=params)  # type: ignore[no-any-return]

    async def producer_session(self, session_id: str) -> dict[str, Any]:
        return await self.json(  # type: ignore[no-any-return]
            "GET", f"/api/producer/sessions/{session_id}"
        )

    async def export_png(self, session_id: str) -> bytes:
        return (await self.request("GET", f"/api/sessions/{session_id}/export.png")).content

    async def export_json(self, session_id: str) -> dict[str, Any]:
        return await self.json(  # type: ignore[no-any-return]
            "GET", f"/api/sessions/{session_id}/export.json"
        )

    @contextlib.asynccontextmanager
    async def events(
        self, types: Iterable[str] | None = None, session: str | None = None
    ) -> AsyncIterator[AsyncIterator[ServerEvent]]:
        """``async with api.events() as stream: async for ev in stream`` (server-sent events).

        The first message is ``ready`` (the subscription is live); the stream ends when the
        server ends it (``closing`` at shutdown, ``dropped`` for a client that fell behind).
        """
        params: dict[str, str] = {}
        if types:
            params["types"] = ",".join(types)
        if session:
            params["session"] = session
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        async with self._http.stream(
            "GET", "/api/events", params=params, timeout=timeout
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                status = response.status_code
                try:
                    err = response.json()["error"]
                except (ValueError, KeyError, TypeError):
                    raise ApiError(status, "http_error", response.text[:200]) from None
                raise ApiError(status, err["code"], err["message"])
            yield parse_sse(response.aiter_lines())


@dataclass(frozen=True)
class Joined:
    """A person who joined through a role link: where, as whom, with which token."""

    base_url: str
    session_id: str
    token: str
    #: The server's answer: ``user_id``, ``name``, ``email``, ``role``, ``url``, ...
    info: dict[str, Any]


async def join(link_url: str, name: str, email: str | None = None) -> Joined:
    """Open a share link as a person: ``joined = await join(link, "Ava")``, then
    ``SessionClient(joined.base_url, joined.session_id, joined.token)``.

    A personal link (a named invite's) is already a person: it is returned as it is.
    """
    url = httpx.URL(link_url)
    base_url = str(url.copy_with(path="/", query=None, fragment=None)).rstrip("/")
    token = token_from_url(link_url)
    async with ApiClient(base_url, token) as api:
        try:
            info = await api.join(name, email)
        except ApiError as err:
            if err.code != "not_a_link":
                raise
            info = await api.whoami()  # already a person: a named invite's own link
            if info.get("session") is None:
                raise ValueError("this is the workspace admin's link, not a session's") from None
            info = {**info, "token": token, "url": link_url}
    return Joined(base_url, str(info["session"]), str(info["token"]), info)


def token_from_url(url: str) -> str:
    """The token of a share link."""
    token = httpx.URL(url).params.get("token")
    if not isinstance(token, str) or not token:
        raise ValueError("the link has no token")
    return token
