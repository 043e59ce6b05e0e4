"""Endpoints of a session's revisions: upscale, animate, and decisions on a revision."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...shared.permissions import Action
from ..review.revisions import ANIMATE_FIELDS, UPSCALE_FIELDS
from .common import identity, json_body, services
from .review_api import DECISION_FIELDS


def _queued(job_id: str, kind: str, engine: str | None) -> dict[str, object]:
    return {"job": job_id, "kind": kind, "engine": engine}


async def request_upscale(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    actor = (await identity(request)).require(session_id, Action.EDIT)
    body = await json_body(request, UPSCALE_FIELDS)
    job = await services(request).revisions.upscale(session_id, body, actor)
    return JSONResponse(_queued(job.id, job.kind.value, job.engine), status_code=202)


async def request_animate(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    actor = (await identity(request)).require(session_id, Action.EDIT)
    body = await json_body(request, ANIMATE_FIELDS)
    job = await services(request).revisions.animate(session_id, body, actor)
    return JSONResponse(_queued(job.id, job.kind.value, job.engine), status_code=202)


async def decide_revision(request: Request) -> Response:
    body = await json_body(request, DECISION_FIELDS)
    result = await services(request).decisions.decide_revision(
        request.path_params["session_id"],
        request.path_params["revision_id"],
        body,
        await identity(request),
    )
    return JSONResponse(result)


async def export_revision(request: Request) -> Response:
    session_id, revision_id = request.path_params["session_id"], request.path_params["revision_id"]
    data, media, _ = await services(request).exporter.revision_file(
        session_id, revision_id, await identity(request)
    )
    suffix = "mp4" if media == "video/mp4" else "png"
    name = f"proofroom-{session_id}-{revision_id}.{suffix}"
    return Response(
        data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


async def export_revision_json(request: Request) -> Response:
    info = await services(request).exporter.revision_provenance(
        request.path_params["session_id"],
        request.path_params["revision_id"],
        await identity(request),
    )
    return Response(json.dumps(info, indent=2, sort_keys=True), media_type="application/json")


routes = [
    Route("/api/sessions/{session_id}/upscale", request_upscale, methods=["POST"]),
    Route("/api/sessions/{session_id}/animate", request_animate, methods=["POST"]),
    Route(
        "/api/sessions/{session_id}/revisions/{revision_id}/decision",
        decide_revision,
        methods=["POST"],
    ),
    Route("/api/sessions/{session_id}/revisions/{revision_id}/export", export_revision),
    Route("/api/sessions/{session_id}/revisions/{revision_id}/export.json", export_revision_json),
]
