"""Server settings: one frozen dataclass, built once from flags and ``PROOFROOM_*`` variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..shared.enums import EditEngine

ENV_PREFIX = "PROOFROOM_"
#: The values of :attr:`Settings.fast_paths`.
FAST_PATHS = ("on", "off")


@dataclass(frozen=True)
class Settings:
    """Every knob of the server; each field mirrors ``PROOFROOM_<NAME>`` in the environment."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Where the SQLite file and the blobs live.
    data: Path = Path("proofroom-data")
    #: The default edit engine of a fix request that names none: ``auto`` (diffusion when
    #: ``model`` is set and loads, else fill), or an engine's name (GET /api/engines).
    engine: str = "auto"
    #: Diffusers inpaint models: local paths or Hugging Face ids already in the cache,
    #: comma-separated; the first is the diffusion engine's default.
    model: str | None = None
    #: Workspace admin token; generated (and kept in the data dir) when not given.
    admin_token: str | None = None
    #: Public base URL used in share links; defaults to the URL a request came in on.
    public_url: str | None = None
    #: SQLite synchronous mode: NORMAL survives a killed process, FULL also a power cut.
    sqlite_synchronous: str = "NORMAL"

    # Image intake.
    max_upload_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    #: The largest picture an upscale may make (pixels: 8192 x 8192).
    max_upscale_pixels: int = 67_108_864
    #: The longest clip an animate request may ask for, in seconds.
    max_clip_seconds: float = 10.0
    #: The highest frame rate of a clip.
    max_clip_fps: int = 30
    #: The largest frame of a clip (pixels: 1920 x 1080).
    max_clip_pixels: int = 2_073_600
    max_title_chars: int = 200

    # Websocket limits.
    max_frame_bytes: int = 4 * 1024 * 1024
    #: Sustained document updates per second per connection, and the burst allowed above it.
    updates_per_second: float = 50.0
    updates_burst: int = 400
    awareness_per_second: float = 120.0
    awareness_burst: int = 600
    max_doc_bytes: int = 32 * 1024 * 1024
    max_connections_per_session: int = 500
    #: Presence client ids one connection may introduce (closed with 4430 beyond).
    max_presence_ids_per_connection: int = 8
    #: Bytes of one presence state (closed with 4431 beyond).
    max_presence_state_bytes: int = 4096
    #: Presence client ids in one session (a newcomer is closed with 4432 beyond).
    max_presence_ids_per_session: int = 2000
    #: Bytes queued to one slow connection before it is dropped.
    max_send_queue_bytes: int = 16 * 1024 * 1024

    # Jobs.
    #: Run the embedded worker in the server process.
    worker: str = "embedded"
    job_lease_seconds: float = 30.0
    job_max_attempts: int = 3
    #: Jobs one session may have waiting or running at once; more are answered 429.
    max_queued_jobs_per_session: int = 32
    #: Hosted-engine jobs (gemini, openai) running at once; they wait on the vendor's API
    #: beside the local worker and never hold it.
    hosted_concurrency: int = 4
    #: Weights files (or folders of them) the spandrel upscale engine may load, comma-separated;
    #: the first is its default. Safetensors only, unless ``allow_pickled_weights`` is on.
    upscale_models: str = ""
    #: ``on`` lets the spandrel engine load pickled weights (.pth, .pt, .ckpt): unpickling a
    #: file can run code, so only an admin who trusts every listed file turns it on.
    allow_pickled_weights: str = "off"

    # Rooms.
    room_idle_seconds: float = 30.0
    #: Compact a room's log once this many updates follow its snapshot.
    compact_after_updates: int = 500

    # Event stream and webhooks.
    #: Seconds between heartbeat comments on ``GET /api/events``.
    events_heartbeat_seconds: float = 15.0
    #: Comma-separated URLs that receive review events as signed JSON POSTs.
    webhook_urls: str = ""
    #: Key of the ``X-Proofroom-Signature`` HMAC; webhooks go unsigned without one.
    webhook_secret: str | None = None
    #: Comma-separated event types sent to webhooks.
    webhook_events: str = "layer.created,layer.decision,job.done,job.failed,job.cancelled"
    #: Deadline for one delivery attempt.
    webhook_timeout_seconds: float = 10.0
    #: Attempts before a delivery is given up (connection errors, timeouts, 5xx, 429).
    webhook_max_attempts: int = 10
    #: First retry delay; doubles per attempt (with jitter) up to the maximum.
    webhook_backoff_seconds: float = 1.0
    webhook_backoff_max_seconds: float = 300.0
    #: Deliveries in flight at once (one per endpoint at most).
    webhook_concurrency: int = 8

    # Adapters.
    #: ``on``: the fast paths built on private internals of uvicorn, asyncio and pycrdt
    #: (each behind one adapter); ``off``: their plain public-API paths (slower, same
    #: behaviour), for when an upgrade of one of those libraries breaks a fast path.
    fast_paths: str = "on"

    def __post_init__(self) -> None:
        engines = ("auto", *(e.value for e in EditEngine))
        if self.engine not in engines:
            raise ValueError(
                f"engine (PROOFROOM_ENGINE) must be one of {', '.join(engines)}, "
                f"not {self.engine!r}"
            )
        if self.hosted_concurrency < 1:
            raise ValueError(
                f"hosted_concurrency (PROOFROOM_HOSTED_CONCURRENCY) must be at least 1, "
                f"not {self.hosted_concurrency}"
            )
        if self.allow_pickled_weights not in FAST_PATHS:
            raise ValueError(
                "allow_pickled_weights (PROOFROOM_ALLOW_PICKLED_WEIGHTS) must be on or off, "
                f"not {self.allow_pickled_weights!r}"
            )
        # A typo fails at start, not at the first connection that takes the path.
        if self.fast_paths not in FAST_PATHS:
            raise ValueError(
                f"fast_paths (PROOFROOM_FAST_PATHS) must be one of {', '.join(FAST_PATHS)}, "
                f"not {self.fast_paths!r}"
            )

    @property
    def fast_paths_on(self) -> bool:
        """Whether the adapters take their fast paths (see :attr:`fast_paths`)."""
        return self.fast_paths == "on"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``PROOFROOM_*`` variables, then explicit (non-None) overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = str(f.type)
    if "Path" in kind:
        return Path(raw)
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    return raw


__all__ = ["ENV_PREFIX", "FAST_PATHS", "Settings"]
