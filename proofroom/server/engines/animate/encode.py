"""Both renditions of a clip, written frame by frame in one pass with PyAV.

Every animate engine ends here: H.264/MP4 (yuv420p, ``+faststart`` so a browser can start
playing before the whole file has arrived) for everything that plays H.264, and VP9/WebM
for what does not (Chromium as Playwright drives it, DESIGN.md section 8). Frames are handed
to one encoding thread, which converts each to yuv420p and feeds both encoders in turn while
the caller renders the next frame (PyAV releases the GIL while converting and encoding);
that overlap is what keeps 4 s of 720p, both renditions, within the 5-second budget on two
cores.

The same frames always give byte-identical files: each encoder has a fixed thread count
(never "auto"), the WebM is written bit-exact (no random segment id), and x264 runs without
its macroblock tree (``mbtree=0``): with it, the same frames of a camera move encoded
differently from run to run within one process (a zoom's frames, not a plain shift's), and
a reviewer comparing two renders of one clip must see no difference. The settings (x264
``superfast``, libvpx in realtime mode at ``cpu-used`` 8) are recorded in the details.
"""

from __future__ import annotations

import importlib.metadata
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..base import EngineError

#: H.264: quality-targeted, fast (``superfast`` takes a fifth less CPU than ``veryfast``
#: for files 1.6x larger, 0.8 MB for 4 s of 720p); ``yuv420p`` is what every player
#: decodes. ``mbtree=0``: see the module's docstring (determinism).
H264_OPTIONS = {"preset": "superfast", "crf": "20", "threads": "2", "x264-params": "mbtree=0"}
#: VP9 in constant-quality mode (``b`` 0), realtime speed.
VP9_OPTIONS = {
    "deadline": "realtime",
    "cpu-used": "8",
    "row-mt": "1",
    "crf": "30",
    "b": "0",
    "threads": "2",
}
#: Frames handed to the encoders and not yet encoded, at most (bounds the memory held).
IN_FLIGHT = 4


def even_size(width: int, height: int) -> tuple[int, int, str | None]:
    """``(width, height)`` rounded down to even numbers, and a note when that changed them."""
    if width < 2 or height < 2:
        raise EngineError(f"a clip needs at least 2x2 pixels, not {width}x{height}")
    w, h = width - width % 2, height - height % 2
    note = (
        None
        if (w, h) == (width, height)
        else (f"{width}x{height} rounded to {w}x{h} (H.264 and VP9 need even sizes)")
    )
    return w, h, note


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a core dependency
        raise EngineError("writing clips needs PyAV: pip install av") from exc
    return av


class ClipWriter:
    """Writes frames to ``mp4`` and ``webm`` at once; use as a context manager."""

    def __init__(self, mp4: Path, webm: Path, width: int, height: int, fps: int) -> None:
        if width % 2 or height % 2:
            raise EngineError(f"clip sizes must be even, not {width}x{height}")
        self.av = av = _av()
        self.width, self.height, self.fps = width, height, fps
        self.frames = 0
        self._outputs: list[tuple[Any, Any]] = []
        # One thread feeds both encoders in turn (PyAV frames are not shared across threads).
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(1, "encode")
        self._pending: deque[Future[None]] = deque()
        try:
            for path, codec, options, container_options in (
                (mp4, "libx264", H264_OPTIONS, {"movflags": "+faststart"}),
                # bitexact: no random segment id, so the same frames make the same file.
                (webm, "libvpx-vp9", VP9_OPTIONS, {"fflags": "+bitexact"}),
            ):
                # A file left by an earlier attempt (a crashed job run again) goes first,
                # so nothing of it can survive into the new one.
                path.unlink(missing_ok=True)
                container = av.open(str(path), "w", options=container_options)
                stream = container.add_stream(codec, rate=fps, options=dict(options))
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p"
                stream.time_base = Fraction(1, fps)
                self._outputs.append((container, stream))
        except Exception:
            self._close(abort=True)
            raise

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self._close(abort=exc is not None)

    def write(self, rgb: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame of the writer's size to both renditions."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise EngineError(
                f"frame {self.frames} is {rgb.shape} {rgb.dtype}, "
                f"not {self.height}x{self.width}x3 uint8"
            )
        assert self._pool is not None, "the writer is closed"
        pixels = np.array(rgb, copy=True, order="C")  # the caller may reuse its array
        self._pending.append(
            self._pool.submit(_encode_all, self._outputs, pixels, self.frames, self.fps)
        )
        self.frames += 1
        while len(self._pending) > IN_FLIGHT:
            self._pending.popleft().result()

    def _close(self, abort: bool) -> None:
        outputs, self._outputs = self._outputs, []
        pool, self._pool = self._pool, None
        try:
            # Every frame handed over is encoded (or failed) before a container closes.
            errors = [f.exception() for f in self._pending]
            self._pending.clear()
            if not abort:
                for error in errors:
                    if error is not None:
                        raise error
                _encode_all(outputs, None, 0, self.fps)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            for container, _ in outputs:
                container.close()

    def details(self) -> dict[str, Any]:
        """Codec settings and library versions, for provenance."""
        return {
            "mp4": {
                "codec": "h264",
                "encoder": "libx264",
                "pix_fmt": "yuv420p",
                "faststart": True,
                **H264_OPTIONS,
            },
            "webm": {"codec": "vp9", "encoder": "libvpx-vp9", "pix_fmt": "yuv420p", **VP9_OPTIONS},
            "pyav": _version("av"),
            "ffmpeg": str(getattr(self.av, "ffmpeg_version_info", "")) or None,
        }


def cover(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """``frame`` scaled to cover ``width`` x ``height`` and centre-cropped to it."""
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    k = max(width / w, height / h)
    size = (max(width, round(w * k)), max(height, round(h * k)))
    shrink = size[0] < w
    scaled = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    x0, y0 = (size[0] - width) // 2, (size[1] - height) // 2
    return np.ascontiguousarray(scaled[y0 : y0 + height, x0 : x0 + width])


def _encode_all(outputs: list[tuple[Any, Any]], rgb: np.ndarray | None, pts: int, fps: int) -> None:
    """Encode frame ``pts`` (``rgb``; None: flush) into every output, one after the other."""
    import av

    frame = None
    if rgb is not None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = pts
        frame.time_base = Fraction(1, fps)
    for container, stream in outputs:
        for packet in stream.encode(frame):
            container.mux(packet)


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """The frames of a video file as HxWx3 uint8 RGB, in order."""
    av = _av()
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise EngineError(f"the video cannot be read: {exc}") from None
    with container:
        if not container.streams.video:
            raise EngineError("the file has no video stream")
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise EngineError(f"the video cannot be decoded: {exc}") from None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
