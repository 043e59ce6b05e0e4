"""Gemini's image models ("Nano Banana", "Nano Banana Pro") through google-genai.

Gemini has no mask parameter: the request carries the crop, a black-and-white picture of
the mask, and words saying where to edit and that everything else must stay. The answer is
a whole picture at the model's own size, which engine.py aligns back. The SDK reads
``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` and ``GOOGLE_GEMINI_BASE_URL`` from the
environment itself; the key is never passed through Proofroom's code.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..base import InpaintParams
from .align import Frame, frame_crop, nearest_aspect
from .calls import Failure, HostedRefused, parse_duration, parse_retry_after, redact
from .engine import Answer, HostedEngine, Reference, edit_prompt, encode_jpeg, encode_png

#: The aspects Gemini's image models draw (ImageConfig.aspect_ratio).
ASPECTS = [(1, 1), (2, 3), (3, 2), (3, 4), (4, 3), (9, 16), (16, 9), (21, 9)]
#: Long side of the picture sent; Gemini's 1K answers are about this size.
SEND_SIDE = 1024
#: Finish reasons that mean the model would not draw it.
REFUSALS = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
        "IMAGE_OTHER",
        "NO_IMAGE",
        "OTHER",
    }
)
#: What the common refusals mean, for when the model sends no words of its own (the SDK
#: drops the Gemini API's ``finishMessage``).
MEANINGS = {
    "SAFETY": "the answer was withheld by Google's safety filters",
    "IMAGE_SAFETY": "the picture it drew was withheld by Google's safety filters",
    "PROHIBITED_CONTENT": "the request touches content Google's policy prohibits",
    "IMAGE_PROHIBITED_CONTENT": "the picture touches content Google's policy prohibits",
    "RECITATION": "the answer was too close to existing material",
    "IMAGE_RECITATION": "the picture was too close to existing material",
    "NO_IMAGE": "the model drew no picture",
}
#: How much of the model's own text is kept (provenance, error messages).
TEXT_LIMIT = 400


class GeminiEngine(HostedEngine):
    """Edits with a Gemini image model; the mask is given in words and a picture."""

    name: ClassVar[str] = "gemini"
    models: ClassVar[tuple[str, ...]] = (
        "gemini-2.5-flash-image",
        "gemini-3-pro-image-preview",
        "gemini-3-pro-image",
        "gemini-3.1-flash-image",
    )
    params: ClassVar[frozenset[str]] = frozenset({"prompt", "negative_prompt", "seed"})
    vendor: ClassVar[str] = "Gemini"
    key_variables: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    sdk_module: ClassVar[str] = "google.genai"
    sdk_package: ClassVar[str] = "google-genai"

    def make_client(self) -> Any:
        from google import genai
        from google.genai import types

        # No retry_options: the SDK tries once and calls.py retries.
        options = types.HttpOptions(timeout=round(self.policy.timeout_s * 1000))
        return genai.Client(http_options=options)

    def frame(self, image: np.ndarray, mask: np.ndarray) -> Frame:
        h, w = mask.shape
        aw, ah = nearest_aspect(w, h, ASPECTS)
        if aw >= ah:
            size = (SEND_SIDE, round(SEND_SIDE * ah / aw))
        else:
            size = (round(SEND_SIDE * aw / ah), SEND_SIDE)
        return frame_crop(image, mask, size, f"{aw}:{ah}")

    def encode(self, frame: Frame) -> dict[str, bytes]:
        return {
            "image": encode_jpeg(frame.image),
            "mask": encode_png(np.where(frame.mask, 255, 0).astype(np.uint8)),
        }

    def request(
        self,
        sdk: Any,
        frame: Frame,
        encoded: dict[str, bytes],
        params: InpaintParams,
        references: tuple[Reference, ...],
    ) -> Any:
        from google.genai import types

        parts = [
            types.Part.from_text(
                text=edit_prompt(params, frame, mask_image=True, references=len(references))
            ),
            types.Part.from_bytes(data=encoded["image"], mime_type="image/jpeg"),
            types.Part.from_bytes(data=encoded["mask"], mime_type="image/png"),
        ]
        for reference in references:
            parts.append(types.Part.from_text(text=f"Campaign reference: {reference.role}"))
            parts.append(types.Part.from_bytes(data=reference.png, mime_type="image/png"))
        config = types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=frame.label),
            seed=params.seed % 2**31,
            candidate_count=1,
        )
        return sdk.models.generate_content(
            model=self.model,
            contents=[types.Content(role="user", parts=parts)],
            config=config,
        )

    def classify(self, exc: BaseException) -> Failure | None:
        from google.genai import errors

        if isinstance(exc, errors.APIError):
            headers = getattr(getattr(exc, "response", None), "headers", None) or {}
            wait = parse_retry_after(headers.get("retry-after")) if headers else None
            if wait is None:
                wait = _retry_delay(exc.details)
            words = exc.message or str(exc.details)
            return Failure(
                message=f"{exc.code} {exc.status or ''}: {words}".replace(" :", ":"),
                status=exc.code,
                retry_after=wait,
            )
        return _transport_failure(exc)

    def read(self, response: Any) -> Answer:
        feedback = getattr(response, "prompt_feedback", None)
        if feedback is not None and feedback.block_reason:
            reason = _enum(feedback.block_reason)
            words = feedback.block_reason_message or "no reason given"
            raise HostedRefused(f"Gemini blocked the request ({reason}): {redact(words)}")
        candidates = response.candidates or []
        if not candidates:
            raise HostedRefused("Gemini answered with no candidate and no image")
        candidate = candidates[0]
        parts = (candidate.content.parts if candidate.content else None) or []
        # Thinking models (Nano Banana Pro) may send draft images marked as thoughts.
        images = [
            p.inline_data
            for p in parts
            if p.inline_data is not None and p.inline_data.data and not p.thought
        ]
        text = " ".join(p.text.strip() for p in parts if p.text and not p.thought).strip()
        text = redact(text[:TEXT_LIMIT])
        finish = _enum(candidate.finish_reason) if candidate.finish_reason else None
        if not images:
            words = redact(candidate.finish_message or "") or text
            if finish in REFUSALS:
                words = words or MEANINGS.get(finish or "", "no reason given")
                raise HostedRefused(f"Gemini refused the edit ({finish}): {words}")
            if text:
                raise HostedRefused(f"Gemini answered with text and no image: {text}")
            raise HostedRefused(f"Gemini's answer has no image (finish reason {finish})")
        usage = response.usage_metadata
        meta: dict[str, Any] = {
            "model_version": response.model_version,
            "response_id": response.response_id,
            "finish_reason": finish,
            "usage": None
            if usage is None
            else {
                "prompt_tokens": usage.prompt_token_count,
                "output_tokens": usage.candidates_token_count,
                "thought_tokens": usage.thoughts_token_count,
                "total_tokens": usage.total_token_count,
            },
            "mime_type": images[-1].mime_type,
        }
        if text:
            meta["model_text"] = text
        return Answer(data=bytes(images[-1].data), meta=meta)


def _enum(value: Any) -> str:
    return str(getattr(value, "value", value))


def _retry_delay(details: Any) -> float | None:
    """Gemini's RetryInfo (``error.details[].retryDelay``, "20s") in seconds, if given."""
    error = details.get("error") if isinstance(details, dict) else None
    for item in (error or {}).get("details") or []:
        if isinstance(item, dict) and "retryDelay" in item:
            return parse_duration(item["retryDelay"])
    return None


def _transport_failure(exc: BaseException) -> Failure | None:
    """A timeout or a network error from httpx or httpx2 (the SDKs use either)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    module = type(exc).__module__.split(".")[0]
    if module not in {"httpx", "httpx2", "httpcore", "httpcore2"}:
        return None
    if "TimeoutException" in names or "TimeoutError" in names:
        return Failure(message=f"{type(exc).__name__}", timeout=True)
    if "TransportError" in names or "NetworkError" in names:
        return Failure(message=f"{type(exc).__name__}: {exc}", transient=True)
    return None
