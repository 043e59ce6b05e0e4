"""JSON endpoints for sessions, invites and identity."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...shared.enums import JobKind
from ...shared.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, ProofroomError
from ...shared.permissions import Action
from ...shared.protocol import CloseCode
from ..identity import ADMIN_USER_ID, Identity
from ..jobs.queue import Job
from ..review.events import SESSION_CREATED, Event
from ..store.records import SessionRecord
from . import revisions_api
from .common import base_url, identity, json_body, services, token_of

#: What ``POST /api/sessions/{id}/invites`` reads.
INVITE_FIELDS = frozenset({"role", "name", "expires_in", "kind"})


def review_url(request: Request, session_id: str, token: str) -> str:
    return f"{base_url(request)}/s/{session_id}?token={token}"


def session_json(request: Request, session: SessionRecord) -> dict[str, Any]:
    room = services(request).rooms.rooms.get(session.id)
    return {
        "id": session.id,
        "title": session.title,
        "width": session.width,
        "height": session.height,
        "base": session.base_blob,
        "created_at": session.created_at,
        "created_by": session.created_by,
        "required_approvals": session.required_approvals,
        "participants": len(room.peers) if room else 0,
    }


async def create_session(request: Request) -> Response:
    actor = await identity(request)
    if not actor.is_admin:
        raise Forbidden("only the workspace admin token creates sessions")
    svc = services(request)
    limit = svc.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise _LengthRequired()
    if int(declared) > limit + 64 * 1024:
        raise PayloadTooLarge(f"uploads are limited to {limit} bytes")
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise BadRequest("send the image as multipart/form-data field 'image'")
    async with request.form(max_files=1, max_fields=8, max_part_size=64 * 1024) as form:
        upload = form.get("image")
        title = form.get("title") or ""
        if not isinstance(upload, UploadFile):
            raise BadRequest("the multipart field 'image' (a file) is required")
        if not isinstance(title, str):
            raise BadRequest("the title must be text")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"uploads are limited to {limit} bytes")
    session, links = await svc.sessions.create(data, title, actor)
    svc.bus.publish(
        Event(SESSION_CREATED, session.id, {"title": session.title, "at": session.created_at})
    )
    body = session_json(request, session)
    body["links"] = {
        role.value: review_url(request, session.id, made.token) for role, made in links.items()
    }
    return JSONResponse(body, status_code=201)


class _LengthRequired(ProofroomError):
    status, code = 411, "length_required"

    def __init__(self) -> None:
        super().__init__("a Content-Length header is required for uploads")


async def list_sessions(request: Request) -> Response:
    actor = await identity(request)
    svc = services(request)
    if actor.is_admin:
        sessions = await svc.records.list_sessions()
    else:
        assert actor.session_id is not None
        sessions = [await svc.sessions.require(actor.session_id)]
    return JSONResponse({"sessions": [session_json(request, s) for s in sessions]})


async def get_session(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    (await identity(request)).require(session_id, Action.VIEW)
    session = await services(request).sessions.require(session_id)
    return JSONResponse(session_json(request, session))


async def create_invite(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    actor = (await identity(request)).require(session_id, Action.ADMINISTER)
    body = await json_body(request, INVITE_FIELDS)
    made = await services(request).sessions.invite(
        session_id,
        body.get("role", ""),
        body.get("name", ""),
        body.get("expires_in"),
        actor,
        body.get("kind", "personal"),
    )
    return JSONResponse(
        {
            **made.invite.public(),
            "token": made.token,
            "url": review_url(request, session_id, made.token),
        },
        status_code=201,
    )


async def list_invites(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    (await identity(request)).require(session_id, Action.ADMINISTER)
    svc = services(request)
    await svc.sessions.require(session_id)
    invites = await svc.records.list_invites(session_id)
    return JSONResponse({"invites": [i.public() for i in invites]})


async def participants(request: Request) -> Response:
    """The people behind the user ids in a session's document, for everyone in it: holders
    of named invites and everyone who joined through a link (a link is not a person)."""
    session_id = request.path_params["session_id"]
    (await identity(request)).require(session_id, Action.VIEW)
    svc = services(request)
    await svc.sessions.require(session_id)
    invites = {i.id: i for i in await svc.records.list_invites(session_id)}
    people: dict[str, dict[str, Any]] = {
        i.user_id: {"name": i.name, "role": i.role.value, "active": i.is_active()}
        for i in invites.values()
        if not i.is_link
    }
    for person in await svc.records.list_participants(session_id):
        link = invites[person.invite_id]
        people[person.id] = {
            "name": person.name,
            "role": link.role.value,
            "active": link.is_active(),
        }
    people[ADMIN_USER_ID] = {"name": "Admin", "role": "owner", "active": True}
    return JSONResponse({"participants": people})


#: What ``POST /api/join`` reads.
JOIN_FIELDS = frozenset({"name", "email"})


async def join(request: Request) -> Response:
    """A role link's holder becomes a person: their own identity and token (DESIGN.md 5).

    ``GET`` only says what the token is (``{link, role, session}``), so that a page opened
    from a share link knows whether to ask for a name, without a refused request.
    """
    if request.method == "GET":
        seen = await services(request).auth.peek(token_of(request))
        return JSONResponse(
            {"link": seen.is_link, "role": seen.role.value, "session": seen.session_id}
        )
    body = await json_body(request, JOIN_FIELDS)
    joined = await services(request).auth.join(
        token_of(request), body.get("name"), body.get("email")
    )
    person = joined.identity
    assert person.session_id is not None
    return JSONResponse(
        {
            "token": joined.token,
            "user_id": person.user_id,
            "name": person.name,
            "email": person.email,
            "role": person.role.value,
            "session": person.session_id,
            "url": review_url(request, person.session_id, joined.token),
        },
        status_code=201,
    )


async def revoke_invite(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    actor = (await identity(request)).require(session_id, Action.ADMINISTER)
    svc = services(request)
    invite = await svc.sessions.revoke(session_id, request.path_params["invite_id"], actor)
    room = svc.rooms.rooms.get(session_id)
    if room is not None:
        for peer in list(room.peers):
            if peer.identity.invite_id == invite.id:
                peer.close_soon(CloseCode.FORBIDDEN, "this invite was revoked")
    return Response(status_code=204)


async def whoami(request: Request) -> Response:
    actor: Identity = await identity(request)
    return JSONResponse(
        {
            "user_id": actor.user_id,
            "name": actor.name,
            "role": actor.role.value,
            "session": actor.session_id,
            "admin": actor.is_admin,
            "email": actor.email,
            "expires_at": actor.expires_at,
        }
    )


async def get_blob(request: Request) -> Response:
    await identity(request)
    svc = services(request)
    blob_id = request.path_params["blob_id"]
    data = await svc.blobs.get(blob_id)
    etag = f'"{blob_id}"'
    headers = {"Cache-Control": "private, max-age=31536000, immutable", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    media = _media_type(data)
    return Response(data, media_type=media, headers=headers)


def _media_type(data: bytes) -> str:
    """What a blob holds, from its first bytes (pictures, and a clip's renditions)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if data[:4] == b"\x1aE\xdf\xa3":
        return "video/webm"
    return "application/octet-stream"


async def get_blob_preview(request: Request) -> Response:
    """A big picture's downscaled JPEG, drawn first while the full image loads; a picture
    small enough to need none is sent as it is."""
    await identity(request)
    svc = services(request)
    blob_id = request.path_params["blob_id"]
    preview = await svc.versions.preview(blob_id)
    served = preview or blob_id
    etag = f'"{served}"'
    headers = {"Cache-Control": "private, max-age=31536000, immutable", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    data = await svc.blobs.get(served)
    media = "image/jpeg" if preview else "image/png"
    return Response(data, media_type=media, headers=headers)


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "session": job.session_id,
        "pin_id": job.pin_id,
        "status": job.status.value,
        "attempts": job.attempts,
        "error": job.error,
        "kind": job.kind.value,
        "engine": job.engine,
        # The queue keeps a job's one result id: a layer for edits, a revision otherwise.
        "layer": job.layer_id if job.kind is JobKind.EDIT else None,
        "revision": job.layer_id if job.kind is not JobKind.EDIT else None,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


async def request_fix(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    actor = (await identity(request)).require(session_id, Action.EDIT)
    # Fixes.request checks the fields itself: its callers are not all HTTP.
    body = await json_body(request, None)
    jobs = await services(request).fixes.request(
        session_id, request.path_params["pin_id"], body, actor
    )
    return JSONResponse({"jobs": [j.id for j in jobs]}, status_code=202)


async def get_job(request: Request) -> Response:
    actor = await identity(request)
    job = await services(request).queue.get(request.path_params["job_id"])
    if job is None:
        raise NotFound("no such job")
    actor.require(job.session_id, Action.VIEW)
    return JSONResponse(job_json(job))


async def cancel_job(request: Request) -> Response:
    actor = await identity(request)
    job = await services(request).fixes.cancel(request.path_params["job_id"], actor)
    return JSONResponse(job_json(job))


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    return Response(services(request).metrics.render(), media_type="text/plain; version=0.0.4")


async def sessions_collection(request: Request) -> Response:
    if request.method == "POST":
        return await create_session(request)
    return await list_sessions(request)


async def invites_collection(request: Request) -> Response:
    if request.method == "POST":
        return await create_invite(request)
    return await list_invites(request)


routes = [
    Route("/healthz", healthz),
    Route("/metrics", metrics),
    Route("/api/whoami", whoami),
    Route("/api/join", join, methods=["GET", "POST"]),
    # One route per path, so that a 405 lists every allowed method.
    Route("/api/sessions", sessions_collection, methods=["GET", "POST"]),
    Route("/api/sessions/{session_id}", get_session),
    Route("/api/sessions/{session_id}/invites", invites_collection, methods=["GET", "POST"]),
    Route("/api/sessions/{session_id}/invites/{invite_id}", revoke_invite, methods=["DELETE"]),
    Route("/api/sessions/{session_id}/participants", participants),
    Route("/api/sessions/{session_id}/pins/{pin_id}/fix", request_fix, methods=["POST"]),
    Route("/api/jobs/{job_id}", get_job),
    Route("/api/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    Route("/blobs/{blob_id}", get_blob),
    Route("/blobs/{blob_id}/preview", get_blob_preview),
    *revisions_api.routes,
]
