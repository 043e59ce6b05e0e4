"""A loopback stand-in for Veo's REST interface on Vertex AI (express mode, an API key).

google-genai talks httpx2, which respx cannot intercept (DESIGN.md section 8), so the Veo
engine is tested through the real SDK (``GOOGLE_VERTEX_BASE_URL`` pointing here) against a
real server on 127.0.0.1 that speaks the same long-running-operation interface:

- ``POST /v1beta1/publishers/google/models/{model}:predictLongRunning``: starts an
  operation, answers its name (``projects/../models/{model}/operations/{id}``)
- ``POST /v1beta1/{model resource}:fetchPredictOperation`` ``{operationName}``: ``done``
  after a few polls, with the video inline (``response.videos[].bytesBase64Encoded``), or an
  ``error``, or a safety filter's reasons

Its "model" makes a real H.264 MP4 from the still it was sent: a slow push-in at 24 fps,
at Veo's 16:9 or 9:16 frame (smaller than Veo's 720p by default, to keep tests quick).
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import tempfile
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .hosted_standin import Running

__all__ = ["Running", "VeoReply", "VeoStandIn", "push_in_clip"]

#: Where the stand-in says its operations live.
RESOURCE = "projects/standin/locations/us-central1/publishers/google/models"


@dataclass
class VeoReply:
    """How the stand-in answers one operation."""

    #: video | error (the operation fails) | filtered (safety) | never (never finishes) |
    #: busy (the start call answers 429 first, then a video) | corrupt (bytes that are not
    #: a video) | stored (the video left at a gs:// URI instead of inline)
    kind: str = "video"
    #: Polls answered "not done" before the operation finishes.
    polls: int = 2
    #: The drawn frame for 16:9 (9:16 swaps it); Veo's own is 1280x720.
    size: tuple[int, int] = (320, 180)
    fps: int = 24


@dataclass
class Operation:
    name: str
    reply: VeoReply
    body: dict[str, Any]
    polls: int = 0


@dataclass
class VeoStandIn:
    """The stand-in app and what it has seen; serve it with ``Running``."""

    url: str = ""
    replies: deque[VeoReply] = field(default_factory=deque)
    operations: dict[str, Operation] = field(default_factory=dict)
    starts: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    polls: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[Route("/{version}/{target:path}", self._post, methods=["POST"])]
        )

    def expect(self, *replies: VeoReply) -> None:
        """Answer the next operations with ``replies``, in order (then: plain videos)."""
        self.replies.clear()
        self.replies.extend(replies)
        self.starts.clear()
        self.headers.clear()
        self.polls = 0

    async def _post(self, request: Request) -> Response:
        target, _, action = request.path_params["target"].rpartition(":")
        self.headers.append(dict(request.headers))
        body = await request.json()
        if action == "predictLongRunning" and target.startswith("publishers/google/models/"):
            return self._start(target.rsplit("/", 1)[1], body)
        if action == "fetchPredictOperation":
            return self._poll(str(body.get("operationName", "")))
        return _error(404, "NOT_FOUND", f"unknown method {target}:{action}")

    def _start(self, model: str, body: dict[str, Any]) -> Response:
        self.starts.append(body)
        if self.replies and self.replies[0].kind == "busy":
            self.replies[0] = VeoReply("video", polls=self.replies[0].polls)
            return _error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.", "0.05")
        reply = self.replies.popleft() if self.replies else VeoReply()
        name = f"{RESOURCE}/{model}/operations/op{next(self._ids)}"
        self.operations[name] = Operation(name, reply, body)
        return JSONResponse({"name": name})

    def _poll(self, name: str) -> Response:
        op = self.operations.get(name)
        if op is None:
            return _error(404, "NOT_FOUND", f"no operation {name}")
        self.polls += 1
        op.polls += 1
        if op.reply.kind == "never" or op.polls <= op.reply.polls:
            return JSONResponse({"name": name, "done": False})
        if op.reply.kind == "error":
            return JSONResponse(
                {
                    "name": name,
                    "done": True,
                    "error": {"code": 13, "message": "Video generation failed (stand-in)."},
                }
            )
        kind = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"
        if op.reply.kind == "filtered":
            response = {
                "@type": kind,
                "raiMediaFilteredCount": 1,
                "raiMediaFilteredReasons": ["The input image contains content we block."],
            }
            return JSONResponse({"name": name, "done": True, "response": response})
        if op.reply.kind == "stored":
            video = {"gcsUri": "gs://standin-bucket/veo/sample_0.mp4", "mimeType": "video/mp4"}
        else:
            data = (
                b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 4
                if op.reply.kind == "corrupt"
                else _draw(op)
            )
            video = {"bytesBase64Encoded": base64.b64encode(data).decode(), "mimeType": "video/mp4"}
        response = {"@type": kind, "raiMediaFilteredCount": 0, "videos": [video]}
        return JSONResponse({"name": name, "done": True, "response": response})


def _draw(op: Operation) -> bytes:
    instance = op.body["instances"][0]
    image = instance.get("image") or {}
    encoded = image["bytesBase64Encoded"]
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as img:
        still = np.asarray(img.convert("RGB"))
    parameters = op.body.get("parameters") or {}
    seconds = int(parameters.get("durationSeconds") or 8)
    w, h = op.reply.size
    if parameters.get("aspectRatio") == "9:16":
        w, h = h, w
    return push_in_clip(still, w, h, seconds * op.reply.fps, op.reply.fps)


def push_in_clip(still: np.ndarray, width: int, height: int, frames: int, fps: int) -> bytes:
    """An H.264 MP4 of a slow push-in over ``still`` (covered to ``width`` x ``height``)."""
    sh, sw = still.shape[:2]
    k = max(width / sw, height / sh)
    with tempfile.TemporaryDirectory(prefix="veo-standin-") as folder:
        path = Path(folder) / "out.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(frames):
                zoom = k * (1 + 0.1 * i / max(1, frames - 1))
                m = np.array(
                    [
                        [zoom, 0, width / 2 - zoom * sw / 2],
                        [0, zoom, height / 2 - zoom * sh / 2],
                    ]
                )
                rgb = cv2.warpAffine(still, m, (width, height), flags=cv2.INTER_LINEAR)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, fps)
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        return path.read_bytes()


def _error(status: int, name: str, message: str, retry_after: str | None = None) -> Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": name}
    headers = {"retry-after": retry_after} if retry_after else None
    return Response(
        json.dumps({"error": error}),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )
