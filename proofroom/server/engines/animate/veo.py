"""Veo (Google's video models) through google-genai's ``generate_videos``.

google-genai 3.x runs ``generate_videos`` only against Vertex AI (its "Gemini Enterprise
Agent Platform" mode; the Gemini Developer API mode refuses the call), so the client is
made with ``vertexai=True`` and the SDK's own environment rules: in express mode it takes
the same key variables as the Gemini engine (``GOOGLE_API_KEY``, else ``GEMINI_API_KEY``),
or a project (``GOOGLE_CLOUD_PROJECT``, ``GOOGLE_CLOUD_LOCATION``) with Google Cloud
credentials; ``GOOGLE_VERTEX_BASE_URL`` points it elsewhere. Proofroom never passes the key.

A clip is a long-running operation: one call starts it (``predictLongRunning``), then
``operations.get`` (``fetchPredictOperation``) is polled every ``veo_poll_interval``
seconds (10 by default, as Google's examples do) until it is done, failed, or older than
``veo_timeout`` (600 s). Each call goes through hosted/calls.py, so a 429 or a 5xx is
retried there like an image edit's, a cancelled job stops waiting within a tenth of a
second, and no message carries the key. The finished video comes back inline (no
``output_gcs_uri`` is asked for); it is decoded, fitted to the asked size (cover: scaled and
centre-cropped, never stretched) and written to both renditions like any other clip.

Veo decides more than the camera engine does: it draws 720p (or 1080p) at 24 fps in 16:9
or 9:16, for a few fixed lengths. What was asked and what Veo could give are both kept,
and every rounding is a warning in the details.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..base import EngineError, ProgressFn
from ..hosted.calls import (
    CallPolicy,
    Failure,
    HostedError,
    HostedRefused,
    HostedTimeout,
    call_with_retries,
    parse_duration,
    parse_retry_after,
    redact,
)
from ..kinds import AnimateEngine, ClipResult, ClipSpec
from .camera import check_spec, encode_clip
from .encode import cover, even_size, read_frames

VENDOR = "Veo"
#: Clip lengths (seconds) each model family accepts.
DURATIONS = {"veo-2": (5, 6, 7, 8), "veo-3": (4, 6, 8)}
#: The aspects Veo draws.
ASPECTS = {"16:9": 16 / 9, "9:16": 9 / 16}
#: Veo's frame rate.
VEO_FPS = 24
#: Polling defaults (seconds), overridden by the settings ``veo_poll_interval`` and
#: ``veo_timeout``.
POLL_INTERVAL = 10.0
OPERATION_TIMEOUT = 600.0
#: What a finished operation typically takes, for the progress bar only.
EXPECTED_S = 60.0


def durations_for(model: str) -> tuple[int, ...]:
    """The clip lengths ``model`` accepts."""
    return DURATIONS["veo-2"] if model.startswith("veo-2") else DURATIONS["veo-3"]


def nearest_duration(model: str, seconds: float) -> int:
    """The accepted length closest to ``seconds`` (the longer one on a tie)."""
    return min(durations_for(model), key=lambda d: (abs(d - seconds), -d))


def nearest_aspect(width: int, height: int) -> str:
    """``16:9`` or ``9:16``, whichever is closer to ``width``:``height``."""
    ratio = width / height
    return min(ASPECTS, key=lambda a: abs(np.log(ASPECTS[a] / ratio)))


class VeoEngine(AnimateEngine):
    """Image-to-video with Veo through Vertex AI (express mode: GEMINI_API_KEY)."""

    name: ClassVar[str] = "veo"
    models: ClassVar[tuple[str, ...]] = (
        "veo-3.1-generate-preview",
        "veo-3.1-fast-generate-preview",
        "veo-3.0-generate-001",
        "veo-3.0-fast-generate-001",
        "veo-2.0-generate-001",
    )
    params: ClassVar[frozenset[str]] = frozenset({"seconds", "fps", "prompt", "seed"})
    hosted: ClassVar[bool] = True
    key_variables: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    sdk_package: ClassVar[str] = "google-genai"

    @classmethod
    def availability(cls, settings: Any = None) -> str | None:
        try:
            found = importlib.util.find_spec("google.genai") is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return "google-genai not installed"
        keys = (*cls.key_variables, "GOOGLE_CLOUD_PROJECT")
        if not any(os.environ.get(name, "").strip() for name in keys):
            return "no GEMINI_API_KEY (or GOOGLE_API_KEY, or GOOGLE_CLOUD_PROJECT)"
        return None

    def __init__(self, model: str | None = None, settings: Any = None) -> None:
        chosen = model or self.models[0]
        if chosen not in self.models:
            raise EngineError(f"unknown veo model {chosen!r}; choose one of {list(self.models)}")
        reason = self.availability(settings)
        if reason:
            raise EngineError(f"the veo engine cannot run here: {reason}")
        super().__init__(chosen, settings)
        self.policy = CallPolicy.from_settings(settings)
        self.poll_interval = float(getattr(settings, "veo_poll_interval", None) or POLL_INTERVAL)
        self.operation_timeout = float(getattr(settings, "veo_timeout", None) or OPERATION_TIMEOUT)
        if self.poll_interval <= 0 or self.operation_timeout <= 0:
            raise EngineError("veo_poll_interval and veo_timeout must be positive")
        self._client: Any = None

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "kind": self.kind,
            "model": self.model,
            "hosted": True,
            "sdk": f"google-genai {_version('google-genai')}",
            "timeout_s": self.policy.timeout_s,
            "operation_timeout_s": self.operation_timeout,
            "poll_interval_s": self.poll_interval,
        }

    def client(self) -> Any:
        if self._client is None:
            from google import genai
            from google.genai import types

            options = types.HttpOptions(timeout=round(self.policy.timeout_s * 1000))
            # No retry_options: the SDK tries once and calls.py retries.
            self._client = genai.Client(vertexai=True, http_options=options)
        return self._client

    def animate(
        self, image: np.ndarray, spec: ClipSpec, out_dir: Path, progress: ProgressFn
    ) -> ClipResult:
        from google.genai import types

        check_spec(spec)
        width, height, rounded = even_size(spec.width, spec.height)
        assert self.model is not None
        seconds = nearest_duration(self.model, spec.seconds)
        aspect = nearest_aspect(width, height)
        warnings = [rounded] if rounded else []
        if seconds != spec.seconds:
            warnings.append(
                f"{spec.seconds:g} s asked; {self.model} makes {list(durations_for(self.model))}"
                f" s clips, so {seconds} s"
            )
        if spec.fps != VEO_FPS:
            warnings.append(f"{spec.fps} fps asked; Veo draws {VEO_FPS} fps, kept as drawn")
        record: dict[str, Any] = {"calls": []}
        started = time.monotonic()

        def check() -> None:
            elapsed = time.monotonic() - started
            progress(int(elapsed), int(max(EXPECTED_S, elapsed + 1)), None)

        def call(what: str, attempt: Any) -> Any:
            entry: dict[str, Any] = {"call": what}
            record["calls"].append(entry)
            return call_with_retries(VENDOR, attempt, self.classify, self.policy, check, entry)

        client = self.client()
        still = types.Image(image_bytes=_png(image[..., :3]), mime_type="image/png")
        config = types.GenerateVideosConfig(
            number_of_videos=1,
            duration_seconds=seconds,
            aspect_ratio=aspect,
            seed=spec.seed % 2**32,
        )
        source = types.GenerateVideosSource(prompt=spec.prompt or None, image=still)
        operation = call(
            "generate_videos",
            lambda: client.models.generate_videos(model=self.model, source=source, config=config),
        )
        polls = 0
        while not operation.done:
            waited = time.monotonic() - started
            if waited >= self.operation_timeout:
                raise HostedTimeout(
                    f"Veo did not finish the clip within {self.operation_timeout:g} s "
                    f"(operation {operation.name}, {polls} polls)"
                )
            _wait(min(self.poll_interval, self.operation_timeout - waited), check)
            operation = call("operations.get", functools.partial(client.operations.get, operation))
            polls += 1
        frames_in = self._decode(self._video(operation))
        h_in, w_in = frames_in[0].shape[:2]
        if (w_in, h_in) != (width, height):
            warnings.append(
                f"Veo drew {w_in}x{h_in} ({aspect}); fitted to {width}x{height} "
                "(scaled to cover, centre-cropped)"
            )
        mp4, webm, poster, codecs = encode_clip(
            lambda i: cover(frames_in[i], width, height),
            len(frames_in),
            VEO_FPS,
            width,
            height,
            out_dir,
            progress,
        )
        details: dict[str, Any] = {
            **self.describe(),
            "asked": {"seconds": spec.seconds, "fps": spec.fps, "size": [width, height]},
            "requested": {"duration_seconds": seconds, "aspect_ratio": aspect},
            "operation": operation.name,
            "polls": polls,
            "drawn": {"width": w_in, "height": h_in, "frames": len(frames_in)},
            # The start and any call that was retried (a clean poll says nothing).
            "calls": [c for c in record["calls"] if c["call"] != "operations.get" or c["retries"]],
            "encoding": codecs,
        }
        if warnings:
            details["warnings"] = warnings
        return ClipResult(mp4, webm, poster, len(frames_in), VEO_FPS, width, height, details)

    def _video(self, operation: Any) -> bytes:
        error = operation.error
        if error:
            code = error.get("code") if isinstance(error, dict) else None
            words = redact(str(error.get("message") if isinstance(error, dict) else error))
            raise HostedError(f"Veo's operation failed ({code}): {words}")
        result = operation.result or operation.response
        videos = (result.generated_videos if result else None) or []
        if not videos or videos[0].video is None:
            reasons = (result.rai_media_filtered_reasons if result else None) or []
            if reasons or (result and result.rai_media_filtered_count):
                raise HostedRefused(
                    f"Veo withheld the clip: {redact('; '.join(reasons)) or 'filtered'}"
                )
            raise HostedRefused("Veo's operation finished without a video")
        video = videos[0].video
        if not video.video_bytes:
            raise HostedError(
                f"Veo stored the clip at {video.uri or 'an unknown place'} instead of "
                "returning it; this server reads inline videos only"
            )
        return bytes(video.video_bytes)

    def _decode(self, data: bytes) -> list[np.ndarray]:
        with tempfile.TemporaryDirectory(prefix="veo-") as folder:
            path = Path(folder) / "veo.mp4"
            path.write_bytes(data)
            try:
                frames = list(read_frames(path))
            except EngineError as exc:
                raise HostedError(f"Veo's video {exc.message.removeprefix('the video ')}") from None
        if not frames:
            raise HostedError("Veo's video has no frames")
        return frames

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
        names = {cls.__name__ for cls in type(exc).__mro__}
        if type(exc).__module__.split(".")[0] not in {"httpx", "httpx2", "httpcore", "httpcore2"}:
            return None
        if "TimeoutException" in names or "TimeoutError" in names:
            return Failure(message=type(exc).__name__, timeout=True)
        if "TransportError" in names or "NetworkError" in names:
            return Failure(message=f"{type(exc).__name__}: {exc}", transient=True)
        return None


def _wait(seconds: float, check: Any) -> None:
    """Sleep ``seconds``, calling ``check`` (which raises JobCancelled) a few times a second."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        check()
        time.sleep(min(0.1, left))
    check()


def _retry_delay(details: Any) -> float | None:
    error = details.get("error") if isinstance(details, dict) else None
    for item in (error or {}).get("details") or []:
        if isinstance(item, dict) and "retryDelay" in item:
            return parse_duration(item["retryDelay"])
    return None


def _png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
