"""What both hosted engines share: frame the crop, call the vendor, align the answer back.

A vendor's engine supplies four small pieces: how the crop is framed (the sizes or aspects
its model produces), the SDK call, how the SDK's errors read (``calls.Failure``), and how an
answer reads (an image, or a refusal in the model's own words). Everything else, and every
check, is here, so Gemini and OpenAI fail and record alike.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import logging
import os
import threading
import time
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..base import Engine, EngineError, InpaintParams, ProgressFn
from .align import Frame, align, distance_outside
from .calls import CallPolicy, Failure, HostedError, call_with_retries, redact
from .match import match

logger = logging.getLogger(__name__)

#: An answer larger than this (pixels) is not decoded: no model answers that big.
MAX_ANSWER_PIXELS = 40_000_000
#: Steps reported to the job: the answer arrived, it is aligned.
STEPS = 2
#: Calls whose provenance each worker thread keeps (a fix makes one per crop).
CALLS_KEPT = 256


@dataclass
class Answer:
    """The image a model sent back, and what the vendor said about the call."""

    data: bytes
    #: Provenance: model version, usage, response id, the model's text...
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reference:
    """A campaign reference image (a product shot, a style frame) sent with the edit.

    Not filled in by any request yet: campaigns bring them (DESIGN.md section 3, v2).
    """

    png: bytes
    #: What the model should take from it, in words ("the product's exact colours").
    role: str


class HostedEngine(Engine):
    """An edit engine that asks a vendor's hosted image model and aligns its answer."""

    kind: ClassVar[str] = "edit"
    hosted: ClassVar[bool] = True
    bucket = None
    #: The cast and the grain are matched here (align.py), not by compositing.
    match_context: ClassVar[bool] = False
    models: ClassVar[tuple[str, ...]]
    params: ClassVar[frozenset[str]]
    #: Shown in messages ("Gemini").
    vendor: ClassVar[str]
    #: Environment variables that hold the key, any one of which will do.
    key_variables: ClassVar[tuple[str, ...]]
    #: The SDK's import name and distribution ("google.genai", "google-genai").
    sdk_module: ClassVar[str]
    sdk_package: ClassVar[str]

    @classmethod
    def availability(cls, settings: Any = None) -> str | None:
        """None when this server can call the vendor, else why not."""
        try:
            found = importlib.util.find_spec(cls.sdk_module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"{cls.sdk_package} not installed"
        if not any(os.environ.get(name, "").strip() for name in cls.key_variables):
            return f"no {cls.key_variables[0]}"
        return None

    def __init__(self, model: str | None = None, settings: Any = None) -> None:
        chosen = model or self.models[0]
        if chosen not in self.models:
            raise EngineError(
                f"unknown {self.name} model {chosen!r}; choose one of {list(self.models)}"
            )
        reason = self.availability(settings)
        if reason:
            raise EngineError(f"the {self.name} engine cannot run here: {reason}")
        self.model = chosen
        self.policy = CallPolicy.from_settings(settings)
        self._local = threading.local()
        self._sdk_lock = threading.Lock()
        self._sdk: Any = None

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "kind": self.kind,
            "model": self.model,
            "hosted": True,
            "sdk": f"{self.sdk_package} {_version(self.sdk_package)}",
            "opencv": cv2.__version__,
            "timeout_s": self.policy.timeout_s,
            "attempts": self.policy.attempts,
            "prompt_used": True,
        }

    def last_calls(self, count: int) -> list[dict[str, Any]]:
        """Provenance of this thread's last ``count`` calls of ``inpaint`` (one per crop of a
        fix, oldest first): the model's version and usage, the attempts, the framing, the
        alignment and the cast fit; never a key. Per thread: hosted jobs run at once."""
        records = self._records()
        return [dict(r) for r in list(records)[-count:]] if count > 0 else []

    def last_call(self) -> dict[str, Any]:
        """Provenance of this thread's last ``inpaint`` (see ``last_calls``)."""
        calls = self.last_calls(1)
        return calls[0] if calls else {}

    def _records(self) -> deque[dict[str, Any]]:
        records: deque[dict[str, Any]] | None = getattr(self._local, "records", None)
        if records is None:
            records = self._local.records = deque(maxlen=CALLS_KEPT)
        return records

    def inpaint(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        params: InpaintParams,
        progress: ProgressFn,
        *,
        references: tuple[Reference, ...] = (),
    ) -> np.ndarray:
        """Ask the model to edit the masked part of the crop; its answer, aligned and with
        the cast taken out, at the crop's size (compositing keeps only the mask).

        ``references`` (campaign reference images) are sent after the crop by engines that
        take them (Gemini); no request passes any yet.
        """
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise EngineError(f"expected an HxWx3 uint8 image, not {image.dtype} {image.shape}")
        if mask.shape != image.shape[:2] or not mask.any():
            raise EngineError(f"the mask {mask.shape} does not fit the image {image.shape}")
        record: dict[str, Any] = {"model": self.model}
        self._records().append(record)
        progress(0, STEPS, None)
        started = time.perf_counter()
        frame = self.frame(image, mask)
        record["frame"] = frame.to_json()
        encoded = self.encode(frame)
        sdk = self._client()

        def attempt() -> Any:
            return self.request(sdk, frame, encoded, params, references)

        def check() -> None:
            progress(0, STEPS, None)

        marks = [time.perf_counter()]
        response = call_with_retries(
            self.vendor, attempt, self.classify, self.policy, check, record
        )
        marks.append(time.perf_counter())
        try:
            answer = self.read(response)
        except HostedError:
            raise
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
            raise HostedError(
                f"{self.vendor}'s answer has an unexpected shape ({type(exc).__name__})"
            ) from None
        record.update(answer.meta)
        picture = decode_answer(answer.data, self.vendor)
        marks.append(time.perf_counter())
        progress(1, STEPS, None)
        distance = distance_outside(mask)
        warp, record["alignment"] = align(picture, image, mask, frame, distance)
        marks.append(time.perf_counter())
        # Outside the mask the crop's own pixels stay: the model's spill past the mask
        # never reaches the ring matching or the patch.
        rng = np.random.default_rng([params.seed % 2**63, *mask.shape])
        fill, matched = match(picture, warp, image, mask, rng, distance)
        record.update(matched)
        marks.append(time.perf_counter())
        record["seconds"] = {
            name: round(b - a, 4)
            for name, a, b in zip(
                ("prepare", "remote", "decode", "align", "match"),
                [started, *marks[:-1]],
                marks,
                strict=True,
            )
        }
        progress(STEPS, STEPS, fill)
        logger.info(
            "%s %s answered in %.2f s after %d attempt(s)",
            self.name,
            self.model,
            record["seconds"]["remote"],
            record.get("attempts", 1),
        )
        return fill

    def _client(self) -> Any:
        with self._sdk_lock:
            if self._sdk is None:
                try:
                    self._sdk = self.make_client()
                except ImportError:
                    raise EngineError(f"{self.sdk_package} not installed") from None
                except (ValueError, TypeError) as exc:  # the SDKs' words for a bad setup
                    raise HostedError(
                        f"the {self.vendor} client cannot start: {redact(str(exc))}"
                    ) from None
            return self._sdk

    # -- what each vendor supplies ----------------------------------------------------------

    @abstractmethod
    def make_client(self) -> Any:
        """The SDK's client, configured from the environment, its own retries off."""

    @abstractmethod
    def frame(self, image: np.ndarray, mask: np.ndarray) -> Frame:
        """The crop as this vendor's model is asked to draw it."""

    @abstractmethod
    def encode(self, frame: Frame) -> dict[str, bytes]:
        """The frame's pictures as the vendor takes them (done once, before any attempt)."""

    @abstractmethod
    def request(
        self,
        sdk: Any,
        frame: Frame,
        encoded: dict[str, bytes],
        params: InpaintParams,
        references: tuple[Reference, ...],
    ) -> Any:
        """One call through the SDK (raises the SDK's errors)."""

    @abstractmethod
    def classify(self, exc: BaseException) -> Failure | None:
        """An SDK error as a Failure; None for anything that is not the vendor's."""

    @abstractmethod
    def read(self, response: Any) -> Answer:
        """The image in the SDK's answer; HostedRefused when there is none."""


def edit_prompt(
    params: InpaintParams, frame: Frame, *, mask_image: bool, references: int = 0
) -> str:
    """The instruction: what to change, where, and everything to keep."""
    ask = params.prompt.strip() or "remove what is there and continue the surroundings"
    h, w = frame.mask.shape
    ys, xs = np.nonzero(frame.mask.any(axis=1))[0], np.nonzero(frame.mask.any(axis=0))[0]
    where = (
        f"the region from {100 * xs[0] / w:.0f}% to {100 * (xs[-1] + 1) / w:.0f}% across "
        f"and {100 * ys[0] / h:.0f}% to {100 * (ys[-1] + 1) / h:.0f}% down"
    )
    marked = " (white in the second image, the mask)" if mask_image else ""
    lines = [
        "Edit this photograph. Change only " + where + marked + ": " + ask.rstrip(".") + ".",
        "Keep every other pixel exactly as it is: the same framing, size, position, "
        "perspective, colours, lighting, sharpness and grain. Do not crop, zoom, shift, "
        "recolour or restyle the picture, and add no text, border or watermark.",
        "Answer with the whole edited picture.",
    ]
    if params.negative_prompt.strip():
        lines.insert(1, f"Avoid: {params.negative_prompt.strip()}.")
    if references:
        lines.append(
            f"The last {references} image(s) are campaign references: follow each as its "
            "caption says, without pasting it into the picture."
        )
    return "\n".join(lines)


#: PNG options for masks: fast deflate and no row filters (long runs of one value compress
#: as well without them, and filtering a 1024-pixel RGBA mask costs 30 ms of CPU).
PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 1]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV 4.11+
    PNG_OPTIONS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 mask pixels (grey, or RGBA given as BGRA) as a PNG, quickly."""
    ok, data = cv2.imencode(".png", pixels, PNG_OPTIONS)
    if not ok:  # pragma: no cover - OpenCV can always write a PNG of uint8 pixels
        raise EngineError("the mask could not be encoded as PNG")
    return bytes(data.tobytes())


#: JPEG quality of the crop sent: the answer is compared with the crop itself, never with
#: this copy, so the model only needs to see it well; a PNG of a 1024-pixel photograph
#: costs 50 ms of CPU here, this 3 ms.
JPEG_QUALITY = 95


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """RGB uint8 pixels as a JPEG (quality JPEG_QUALITY, 4:4:4: no colour subsampling)."""
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        JPEG_QUALITY,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    ]
    ok, data = cv2.imencode(".jpg", bgr, params)
    if not ok:  # pragma: no cover
        raise EngineError("the crop could not be encoded as JPEG")
    return bytes(data.tobytes())


def decode_answer(data: bytes, vendor: str) -> np.ndarray:
    """The model's image bytes as RGB uint8; HostedError when they are not an image.

    Pillow reads the header (what the bytes are, how large), OpenCV the pixels (a sixth
    faster on a 1024-pixel PNG); Pillow decodes whatever OpenCV cannot, and says why.
    """
    if not data:
        raise HostedError(f"{vendor} sent an empty image")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > MAX_ANSWER_PIXELS:
                raise HostedError(f"{vendor} sent a {width}x{height} image, too large to use")
            if img.format in ("PNG", "JPEG", "WEBP"):
                decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                if decoded is not None and decoded.shape[:2] == (height, width):
                    rgb: np.ndarray = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
                    return rgb
            rgb = np.asarray(img.convert("RGB"))
    except UnidentifiedImageError:
        raise HostedError(
            f"{vendor} sent image data that is not a picture ({len(data)} bytes, "
            f"starting {data[:8]!r})"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise HostedError(
            f"{vendor} sent image data that cannot be read ({len(data)} bytes: {exc})"
        ) from None
    return rgb


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
