"""A loopback stand-in for Gemini's and OpenAI's image REST interfaces.

The vendors' SDKs send their requests through httpx2, which respx cannot intercept
(DESIGN.md section 8), so the engines are tested through the real SDKs against a real
server on 127.0.0.1 that speaks the same interfaces:

- Gemini: ``POST /{v1,v1beta}/models/{model}:generateContent`` (JSON, ``x-goog-api-key``)
- OpenAI: ``POST /v1/images/edits`` (multipart, ``Authorization: Bearer``)

It answers the way the real models do when they succeed: the whole picture redrawn at the
model's own size, shifted by a fraction of a pixel or more, tinted, with the edit spilling a
little past the mask; and the ways they fail: 429 with Retry-After, 500, a safety block,
text and no image, no image at all, corrupted bytes, too slow, another picture entirely.
Each test queues the replies it wants (``StandIn.expect``); with none queued it edits.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio
import cv2
import numpy as np
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

#: Gemini's 1K answer sizes by requested aspect (they are not exactly the aspect).
GEMINI_SIZES = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
#: What the stand-in paints inside the mask (RGB, before its tint).
PAINT = (40, 170, 70)


@dataclass
class Reply:
    """How the stand-in answers one request."""

    #: image | no_image | text_only | safety | blocked | corrupt | error | other_scene |
    #: garbled (a 200 whose body is not the vendor's JSON, as a broken proxy sends)
    kind: str = "image"
    #: HTTP status for ``error``; Retry-After header value, if any.
    status: int = 200
    retry_after: str | None = None
    #: Seconds to wait before answering.
    delay: float = 0.0
    #: Answer size (w, h); None: the vendor's size for the request.
    size: tuple[int, int] | None = None
    #: Cut the answer to this aspect (w, h) after drawing: "another aspect".
    crop_to: tuple[int, int] | None = None
    #: Shift (answer pixels) of the redrawn picture, x and y.
    shift: tuple[float, float] = (1.6, -0.7)
    #: Per-channel gain and offset of the model's cast.
    gain: tuple[float, float, float] = (1.07, 0.97, 0.9)
    offset: tuple[float, float, float] = (6.0, -2.0, 4.0)
    #: Paint the mask (True) or redraw the picture unchanged (False).
    paint: bool = True
    #: How far (frame pixels) the paint spills past the mask.
    spill: int = 4
    #: Put this text (a key) into an error's message, as a careless proxy might.
    echo_key: str | None = None
    #: Answer with these image bytes at once, drawing nothing (benchmarks).
    canned: bytes | None = None


@dataclass
class Seen:
    """One request the stand-in received."""

    vendor: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    images: list[np.ndarray] = field(default_factory=list)


class StandIn:
    """The stand-in app and what it has seen; ``run()`` serves it on a free port."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.seen: list[Seen] = []
        self.url = ""
        self.app = Starlette(
            routes=[
                Route("/{version}/models/{target}", self._gemini, methods=["POST"]),
                Route("/v1/images/edits", self._openai, methods=["POST"]),
            ]
        )

    def expect(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order (then: plain edits)."""
        self.replies.clear()
        self.replies.extend(replies)
        self.seen.clear()

    def _next(self) -> Reply:
        return self.replies.popleft() if self.replies else Reply()

    # -- Gemini ----------------------------------------------------------------------------

    async def _gemini(self, request: Request) -> Response:
        model, _, action = request.path_params["target"].partition(":")
        body = await request.json()
        parts = body["contents"][0]["parts"]
        images = [_decode(p.get("inlineData") or p.get("inline_data")) for p in parts]
        images = [i for i in images if i is not None]
        self.seen.append(Seen("gemini", request.url.path, dict(request.headers), body, images))
        reply = self._next()
        if reply.delay:
            await anyio.sleep(reply.delay)
        if reply.kind == "garbled":
            return Response("<html>upstream hiccup</html>", media_type="text/html")
        if action != "generateContent":
            return _google_error(404, "NOT_FOUND", f"unknown method {action}")
        if reply.kind == "error":
            words = f"API key not valid: {reply.echo_key}" if reply.echo_key else "stand-in error"
            return _google_error(
                reply.status, _google_status(reply.status), words, reply.retry_after
            )
        usage = {"promptTokenCount": 1290, "candidatesTokenCount": 1290, "totalTokenCount": 2580}
        base = {
            "modelVersion": f"{model}-standin-001",
            "responseId": "resp-standin",
            "usageMetadata": usage,
        }
        if reply.kind == "blocked":
            return JSONResponse(
                {
                    **base,
                    "promptFeedback": {
                        "blockReason": "PROHIBITED_CONTENT",
                        "blockReasonMessage": "The prompt was blocked.",
                    },
                }
            )
        if reply.kind == "safety":
            return JSONResponse(
                {
                    **base,
                    "candidates": [
                        {
                            "finishReason": "IMAGE_SAFETY",
                            "finishMessage": "Unable to show the generated image.",
                            "index": 0,
                        }
                    ],
                }
            )
        if reply.kind == "text_only":
            return JSONResponse(
                {
                    **base,
                    "candidates": [
                        {
                            "content": {
                                "role": "model",
                                "parts": [
                                    {"text": "I can't edit this picture, but I can describe it."}
                                ],
                            },
                            "finishReason": "STOP",
                            "index": 0,
                        }
                    ],
                }
            )
        if reply.kind == "no_image":
            return JSONResponse(
                {
                    **base,
                    "candidates": [
                        {
                            "content": {"role": "model", "parts": []},
                            "finishReason": "STOP",
                            "index": 0,
                        }
                    ],
                }
            )
        config = body.get("generationConfig", {})
        aspect = (config.get("imageConfig") or {}).get("aspectRatio", "1:1")
        size = reply.size or GEMINI_SIZES[aspect]
        data = self._draw(images[0], images[1] > 127, size, reply)
        return JSONResponse(
            {
                **base,
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [
                                {"text": "Here is the edited picture."},
                                {
                                    "inlineData": {
                                        "mimeType": "image/png",
                                        "data": base64.b64encode(data).decode(),
                                    }
                                },
                            ],
                        },
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
            }
        )

    # -- OpenAI ----------------------------------------------------------------------------

    async def _openai(self, request: Request) -> Response:
        fields: dict[str, Any] = {}
        images = []
        async with request.form() as form:  # closes the uploads' temporary files
            for key, value in form.multi_items():
                if hasattr(value, "read"):
                    images.append(_decode_bytes(await value.read(), "RGBA"))
                    fields[key] = getattr(value, "filename", "file")
                else:
                    fields[key] = value
        self.seen.append(Seen("openai", request.url.path, dict(request.headers), fields, images))
        reply = self._next()
        if reply.delay:
            await anyio.sleep(reply.delay)
        if reply.kind == "garbled":
            return Response("<html>upstream hiccup</html>", media_type="text/html")
        if reply.kind == "error":
            headers = {"retry-after": reply.retry_after} if reply.retry_after else None
            words = (
                f"Incorrect API key provided: {reply.echo_key}"
                if reply.echo_key
                else "stand-in error"
            )
            return JSONResponse(
                {"error": {"message": words, "type": "server_error", "param": None, "code": None}},
                status_code=reply.status,
                headers=headers,
            )
        if reply.kind in ("safety", "blocked", "text_only"):
            return JSONResponse(
                {
                    "error": {
                        "message": "Your request was rejected by the safety system. "
                        "safety_violations=[sexual].",
                        "type": "image_generation_user_error",
                        "param": None,
                        "code": "moderation_blocked",
                    }
                },
                status_code=400,
            )
        usage = {
            "input_tokens": 1400,
            "output_tokens": 4160,
            "total_tokens": 5560,
            "input_tokens_details": {"image_tokens": 1300, "text_tokens": 100},
        }
        if reply.kind == "no_image":
            return JSONResponse({"created": 1, "data": [], "usage": usage})
        width, height = (int(v) for v in str(fields.get("size", "1024x1024")).split("x"))
        image, mask = images[0][..., :3], images[1][..., 3] == 0
        data = self._draw(image, mask, reply.size or (width, height), reply)
        return JSONResponse(
            {
                "created": 1764633600,
                "background": "opaque",
                "output_format": "png",
                "quality": "high",
                "size": f"{width}x{height}",
                "usage": usage,
                "data": [{"b64_json": base64.b64encode(data).decode()}],
            },
            headers={"x-request-id": "req_standin"},
        )

    # -- the "model" -----------------------------------------------------------------------

    def _draw(
        self, image: np.ndarray, mask: np.ndarray, size: tuple[int, int], reply: Reply
    ) -> bytes:
        if reply.canned is not None:
            return reply.canned
        if reply.kind == "corrupt":
            return b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
        if reply.kind == "other_scene":
            rng = np.random.default_rng(7)
            noise = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
            return _png(cv2.resize(noise, size, interpolation=cv2.INTER_CUBIC))
        return _png(render(image, mask, size, reply))


def render(image: np.ndarray, mask: np.ndarray, size: tuple[int, int], reply: Reply) -> np.ndarray:
    """What the stand-in's "model" draws for ``image`` with ``mask`` (both frame-sized)."""
    picture = image.astype(np.float32)
    if reply.paint:
        k = 2 * reply.spill + 1
        spilled = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
        h, w = mask.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        texture = 12 * np.sin(xx / 5) * np.cos(yy / 7)
        painted = np.array(PAINT, np.float32) + texture[..., None]
        picture[spilled] = painted[spilled]
    width, height = size
    fh, fw = mask.shape
    kx, ky = width / fw, height / fh
    dx, dy = reply.shift
    # Resize and shift in one warp (pixel centres: x' = (x + 0.5) k - 0.5 + d).
    warp = np.array([[kx, 0, 0.5 * kx - 0.5 + dx], [0, ky, 0.5 * ky - 0.5 + dy]], np.float32)
    drawn = cv2.warpAffine(
        picture, warp, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101
    )
    drawn = drawn * np.array(reply.gain, np.float32) + np.array(reply.offset, np.float32)
    out = np.clip(np.rint(drawn), 0, 255).astype(np.uint8)
    if reply.crop_to:
        cw, ch = reply.crop_to
        # Keep the middle of the picture at aspect cw:ch (the model "recomposed" it).
        if width / height > cw / ch:
            keep = round(height * cw / ch)
            out = out[:, (width - keep) // 2 : (width - keep) // 2 + keep]
        else:
            keep = round(width * ch / cw)
            out = out[(height - keep) // 2 : (height - keep) // 2 + keep]
    return out


def truth_map(
    frame_size: tuple[int, int], size: tuple[int, int], shift: tuple[float, float]
) -> np.ndarray:
    """The 2x3 map from frame pixels to answer pixels that ``render`` applied."""
    fw, fh = frame_size
    kx, ky = size[0] / fw, size[1] / fh
    return np.array([[kx, 0, 0.5 * kx - 0.5 + shift[0]], [0, ky, 0.5 * ky - 0.5 + shift[1]]])


def _google_status(status: int) -> str:
    return {
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
        400: "INVALID_ARGUMENT",
    }.get(status, "UNKNOWN")


def _google_error(status: int, name: str, message: str, retry_after: str | None = None) -> Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": name}
    if status == 429:
        error["message"] = "Resource has been exhausted (e.g. check quota)."
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.05s"}
        ]
    headers = {"retry-after": retry_after} if retry_after else None
    return Response(
        json.dumps({"error": error}),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _decode(blob: dict[str, Any] | None) -> np.ndarray | None:
    if not blob:
        return None
    # google-genai sends URL-safe base64 (as Google's JSON mapping allows); accept both.
    text = blob["data"].replace("-", "+").replace("_", "/")
    return _decode_bytes(base64.b64decode(text), None)


def _decode_bytes(data: bytes, mode: str | None) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert(mode) if mode else img.copy())


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


class Running:
    """The stand-in served by uvicorn in a thread on a free loopback port."""

    def __init__(self, standin: StandIn) -> None:
        self.standin = standin
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            standin.app, log_level="warning", lifespan="off", ws="none", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        standin.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> StandIn:
        self._thread.start()
        ready = threading.Event()

        def wait() -> None:
            while not self.server.started and self._thread.is_alive():
                ready.wait(0.01)

        wait()
        if not self.server.started:
            raise RuntimeError("the hosted stand-in did not start")
        return self.standin

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._sock.close()
