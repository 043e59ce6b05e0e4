"""OpenAI's image models through the openai SDK's ``images.edit`` with a mask.

The mask is a PNG whose alpha is 0 where the model may edit. gpt-image models still redraw
the whole picture (slightly shifted, softened, tinted), so the answer takes the same
align-and-composite path as Gemini's. The SDK reads ``OPENAI_API_KEY`` and
``OPENAI_BASE_URL`` from the environment itself.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar

import numpy as np

from ..base import InpaintParams
from .align import Frame, frame_crop, nearest_aspect
from .calls import Failure, HostedError, HostedRefused, parse_retry_after, redact
from .engine import Answer, HostedEngine, Reference, edit_prompt, encode_jpeg, encode_png

#: The sizes gpt-image models draw, by aspect.
SIZES = {(1, 1): (1024, 1024), (3, 2): (1536, 1024), (2, 3): (1024, 1536)}
#: Error codes that mean the model would not draw it (content policy).
REFUSAL_CODES = frozenset({"moderation_blocked", "content_policy_violation"})


class OpenAIEngine(HostedEngine):
    """Edits with an OpenAI image model, masked (alpha 0 = edit)."""

    name: ClassVar[str] = "openai"
    # gpt-image-1 first, as the issue asks; later models by name.
    models: ClassVar[tuple[str, ...]] = (
        "gpt-image-1",
        "gpt-image-1-mini",
        "gpt-image-1.5",
        "gpt-image-2",
    )
    params: ClassVar[frozenset[str]] = frozenset({"prompt", "negative_prompt"})
    vendor: ClassVar[str] = "OpenAI"
    key_variables: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    sdk_module: ClassVar[str] = "openai"
    sdk_package: ClassVar[str] = "openai"

    def make_client(self) -> Any:
        from openai import OpenAI

        # max_retries=0: calls.py retries, honouring Retry-After the same way for both.
        return OpenAI(timeout=self.policy.timeout_s, max_retries=0)

    def frame(self, image: np.ndarray, mask: np.ndarray) -> Frame:
        h, w = mask.shape
        aspect = nearest_aspect(w, h, list(SIZES))
        size = SIZES[aspect]
        return frame_crop(image, mask, size, f"{size[0]}x{size[1]}")

    def encode(self, frame: Frame) -> dict[str, bytes]:
        # Only the mask's alpha counts: black under it compresses to almost nothing, and
        # needs no RGB-to-BGR swap for OpenCV's writer.
        rgba = np.zeros((*frame.mask.shape, 4), np.uint8)
        rgba[..., 3] = np.where(frame.mask, 0, 255)
        return {"image": encode_jpeg(frame.image), "mask": encode_png(rgba)}

    def request(
        self,
        sdk: Any,
        frame: Frame,
        encoded: dict[str, bytes],
        params: InpaintParams,
        references: tuple[Reference, ...],
    ) -> Any:
        # images.edit takes several images too; campaign references will join ``image``
        # when campaigns bring them (the mask applies to the first).
        raw = sdk.images.with_raw_response.edit(
            model=self.model,
            image=("crop.jpg", encoded["image"], "image/jpeg"),
            mask=("mask.png", encoded["mask"], "image/png"),
            prompt=edit_prompt(params, frame, mask_image=False),
            size=frame.label,
            n=1,
        )
        return raw.parse(), raw.headers.get("x-request-id")

    def classify(self, exc: BaseException) -> Failure | None:
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return Failure(message="the request timed out", timeout=True)
        if isinstance(exc, openai.APIConnectionError):
            return Failure(message=f"a connection error ({exc.message})", transient=True)
        if isinstance(exc, openai.APIStatusError):
            headers = exc.response.headers
            wait = parse_retry_after(headers.get("retry-after"))
            if wait is None and headers.get("retry-after-ms"):
                wait = (parse_retry_after(headers.get("retry-after-ms")) or 0) / 1000
            body = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else {}
            words = body.get("message") if isinstance(body, dict) else None
            code = exc.code or (body.get("code") if isinstance(body, dict) else None)
            return Failure(
                message=f"{exc.status_code}: {words or exc.message}",
                status=exc.status_code,
                retry_after=wait,
                refused=code in REFUSAL_CODES,
            )
        return None

    def read(self, response: Any) -> Answer:
        parsed, request_id = response
        items = parsed.data or []
        if not items:
            raise HostedRefused("OpenAI's answer has no image")
        item = items[0]
        if not item.b64_json:
            if item.url:
                raise HostedError("OpenAI answered with a link instead of the image data")
            raise HostedRefused("OpenAI's answer has no image")
        try:
            data = base64.b64decode(item.b64_json, validate=True)
        except (binascii.Error, ValueError):
            raise HostedError("OpenAI sent image data that is not valid base64") from None
        usage = parsed.usage
        meta: dict[str, Any] = {
            # The images API names no model version; the model asked for is what ran.
            "model_version": self.model,
            "request_id": request_id,
            "created": parsed.created,
            "size": parsed.size,
            "quality": parsed.quality,
            "usage": None
            if usage is None
            else {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "total_tokens": usage.total_tokens,
            },
        }
        if item.revised_prompt:
            meta["revised_prompt"] = redact(item.revised_prompt[:400])
        return Answer(data=data, meta=meta)
