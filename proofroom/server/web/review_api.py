"""Endpoints of the review workflow: decisions, uploaded versions, locks, export, audit."""

from __future__ import annotations

import json

import anyio.to_thread
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...shared.errors import BadRequest, PayloadTooLarge
from ...shared.permissions import Action
from ..engines.registry import DEFAULTS, describe_engines
from .common import identity, json_body, services

#: The fields each JSON endpoint here reads; anything else is a 400 (unknown_field).
DECISION_FIELDS = frozenset({"decision", "note"})
LOCKS_FIELDS = frozenset({"locks"})
SETTINGS_FIELDS = frozenset({"required_approvals"})
#: Longer than any [x, y, w, h] of real pixel counts, short enough that no nesting in it
#: can be deep enough to matter to the JSON decoder.
MAX_BOX_CHARS = 200


async def list_engines(request: Request) -> Response:
    """Every engine Proofroom knows, whether it runs here and why not, its models and the
    parameters it uses; and the engine a request that names none gets."""
    await identity(request)
    svc = services(request)
    infos = await anyio.to_thread.run_sync(describe_engines, svc.settings)
    return JSONResponse(
        {
            "default": {**DEFAULTS, "edit": svc.fixes.default_engine},
            "default_model": {"edit": svc.fixes.default_model},
            "engines": [info.to_json() for info in infos],
        }
    )


async def decide(request: Request) -> Response:
    body = await json_body(request, DECISION_FIELDS)
    result = await services(request).decisions.decide(
        request.path_params["session_id"],
        request.path_params["layer_id"],
        body,
        await identity(request),
    )
    return JSONResponse(result)


async def upload_version(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    actor = (await identity(request)).require(session_id, Action.EDIT)
    svc = services(request)
    limit = svc.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise PayloadTooLarge(f"uploads are limited to {limit} bytes")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("send the version as multipart/form-data field 'image'")
    async with request.form(max_files=1, max_fields=8, max_part_size=64 * 1024) as form:
        upload = form.get("image")
        box = form.get("box")
        if not isinstance(upload, UploadFile):
            raise BadRequest("the multipart field 'image' (a file) is required")
        if box is not None and (not isinstance(box, str) or len(box) > MAX_BOX_CHARS):
            raise BadRequest(
                f"box must be text of at most {MAX_BOX_CHARS} characters: JSON [x, y, w, h]"
            )
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"uploads are limited to {limit} bytes")
    layer_id = await svc.versions.upload(
        session_id, request.path_params["pin_id"], data, box, actor
    )
    return JSONResponse({"layer": layer_id}, status_code=201)


async def set_locks(request: Request) -> Response:
    body = await json_body(request, LOCKS_FIELDS)
    locks = await services(request).versions.set_locks(
        request.path_params["session_id"], body, await identity(request)
    )
    return JSONResponse({"locks": locks})


async def update_session(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    actor = (await identity(request)).require(session_id, Action.ADMINISTER)
    svc = services(request)
    await svc.sessions.require(session_id)
    body = await json_body(request, SETTINGS_FIELDS)
    required = body.get("required_approvals")
    if isinstance(required, bool) or not isinstance(required, int) or not 1 <= required <= 20:
        raise BadRequest("required_approvals must be an integer from 1 to 20")
    changed = await svc.decisions.set_required_approvals(session_id, required, actor)
    return JSONResponse(
        {
            "id": session_id,
            "required_approvals": required,
            "changed": [{"layer": c["layer"], "state": c["state"]} for c in changed],
        }
    )


async def export_png(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    data, _ = await services(request).exporter.png(session_id, await identity(request))
    return Response(
        data,
        media_type="image/png",
        headers={"Content-Disposition": f'attachment; filename="proofroom-{session_id}.png"'},
    )


async def export_json(request: Request) -> Response:
    info = await services(request).exporter.provenance(
        request.path_params["session_id"], await identity(request)
    )
    return Response(json.dumps(info, indent=2, sort_keys=True), media_type="application/json")


async def audit_log(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    (await identity(request)).require(session_id, Action.ADMINISTER)
    svc = services(request)
    await svc.sessions.require(session_id)
    return JSONResponse({"events": await svc.records.audit_events(session_id)})


routes = [
    Route("/api/engines", list_engines),
    Route("/api/sessions/{session_id}/layers/{layer_id}/decision", decide, methods=["POST"]),
    Route("/api/sessions/{session_id}/pins/{pin_id}/versions", upload_version, methods=["POST"]),
    Route("/api/sessions/{session_id}/locks", set_locks, methods=["PUT"]),
    Route("/api/sessions/{session_id}/settings", update_session, methods=["PATCH"]),
    Route("/api/sessions/{session_id}/export.png", export_png),
    Route("/api/sessions/{session_id}/export.json", export_json),
    Route("/api/sessions/{session_id}/audit", audit_log),
]
