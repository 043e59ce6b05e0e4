"""The server's long-lived services, started and stopped together."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

from ..shared.enums import JobKind
from .auth import Authenticator
from .engines import Engine, choose_engine
from .engines.registry import EnginePool, first_model
from .jobs import SqliteJobQueue
from .jobs.worker import Worker
from .metrics import Metrics
from .review.decisions import Decisions
from .review.events import EventBus
from .review.export import Exporter
from .review.fixes import Fixes
from .review.pins import PinTracker
from .review.producer import ProducerIndex
from .review.producer_view import ProducerView
from .review.revisions import Revisions
from .review.sessions import Sessions
from .review.versions import Versions
from .review.webhooks import WebhookConfig, Webhooks
from .rooms import RoomManager
from .rooms.awareness import PresenceLimits
from .rooms.connection import ConnectionLimits
from .settings import Settings
from .store import BlobStore, Database
from .store.doclog import DocLog
from .store.records import Records

logger = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin_token"


@dataclass
class Services:
    settings: Settings
    admin_token: str
    db: Database
    blobs: BlobStore
    records: Records
    doclog: DocLog
    rooms: RoomManager
    auth: Authenticator
    sessions: Sessions
    metrics: Metrics
    limits: ConnectionLimits
    queue: SqliteJobQueue
    #: The default edit engine (a request may name another: ``engines`` makes it).
    engine: Engine
    #: Why this engine was picked (printed at start).
    engine_reason: str
    engines: EnginePool
    fixes: Fixes
    #: Upscale and animate requests (their jobs run through ``fixes.runner``).
    revisions: Revisions
    worker: Worker | None
    bus: EventBus
    decisions: Decisions
    versions: Versions
    exporter: Exporter
    producer: ProducerIndex
    producer_view: ProducerView
    webhooks: Webhooks


def ensure_admin_token(settings: Settings) -> str:
    """The configured admin token, or the one kept in the data dir (made on first start)."""
    if settings.admin_token:
        return settings.admin_token
    path = Path(settings.data) / ADMIN_TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "pr_admin_" + secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Start every service under the data dir; stop them in reverse order."""
    data = Path(settings.data)
    admin_token = ensure_admin_token(settings)  # creates the data dir; once, at start
    metrics = Metrics()
    bus = EventBus()
    webhook_config = WebhookConfig.from_settings(settings)  # bad URLs fail here, at start
    async with Database(data / "proofroom.sqlite3", synchronous=settings.sqlite_synchronous) as db:
        doclog = DocLog(db)
        records = Records(db)
        blobs = BlobStore(data / "blobs")
        producer = ProducerIndex(db)
        bus.listen(producer.on_event)
        webhooks = Webhooks(db, webhook_config)
        bus.listen(webhooks.on_event)
        async with RoomManager(
            doclog,
            metrics,
            max_doc_bytes=settings.max_doc_bytes,
            compact_after_updates=settings.compact_after_updates,
            idle_seconds=settings.room_idle_seconds,
            pin_listener=PinTracker(bus),
            presence=PresenceLimits(
                ids_per_connection=settings.max_presence_ids_per_connection,
                state_bytes=settings.max_presence_state_bytes,
                ids_per_room=settings.max_presence_ids_per_session,
            ),
            native_events=settings.fast_paths_on,
        ) as rooms:
            metrics.gauge("proofroom_rooms", "Rooms loaded in memory.", lambda: len(rooms.rooms))
            metrics.gauge(
                "proofroom_connections",
                "Open websocket connections.",
                lambda: rooms.connection_count,
            )
            metrics.gauge("proofroom_db_commits", "SQLite commits so far.", lambda: db.commits)
            engine, reason = await anyio.to_thread.run_sync(
                choose_engine, settings.engine, settings.model, settings
            )
            logger.info("default edit engine: %s (%s)", engine.name, reason)
            default_model = first_model(settings.model) if engine.name == "diffusion" else None
            engines = EnginePool(settings, engine, default_model or engine.describe().get("model"))
            queue = SqliteJobQueue(
                db,
                max_attempts=settings.job_max_attempts,
                max_queued_per_session=settings.max_queued_jobs_per_session,
            )
            fixes = Fixes(records, blobs, rooms, queue, engines, bus)
            revisions = Revisions(
                records, blobs, rooms, queue, engines, fixes.positions, bus, settings
            )
            for kind in (JobKind.UPSCALE, JobKind.ANIMATE):
                fixes.runner.kinds[kind] = revisions.runner
            worker = None
            if settings.worker == "embedded":
                worker = Worker(
                    queue,
                    fixes.runner,
                    lease_seconds=settings.job_lease_seconds,
                    hosted_concurrency=settings.hosted_concurrency,
                )
                fixes.worker = worker
            async with anyio.create_task_group() as tg:
                if worker is not None:
                    tg.start_soon(worker.run)
                tg.start_soon(webhooks.run)
                tg.start_soon(producer.rebuild_in_background, rooms)
                yield Services(
                    settings=settings,
                    admin_token=admin_token,
                    db=db,
                    blobs=blobs,
                    records=records,
                    doclog=doclog,
                    rooms=rooms,
                    auth=Authenticator(records, admin_token),
                    sessions=Sessions(
                        records,
                        blobs,
                        max_pixels=settings.max_image_pixels,
                        max_title_chars=settings.max_title_chars,
                    ),
                    metrics=metrics,
                    limits=ConnectionLimits(
                        updates_per_second=settings.updates_per_second,
                        updates_burst=settings.updates_burst,
                        awareness_per_second=settings.awareness_per_second,
                        awareness_burst=settings.awareness_burst,
                        max_send_queue_bytes=settings.max_send_queue_bytes,
                    ),
                    queue=queue,
                    engine=engine,
                    engine_reason=reason,
                    engines=engines,
                    fixes=fixes,
                    revisions=revisions,
                    worker=worker,
                    bus=bus,
                    decisions=Decisions(records, rooms, queue, bus, blobs),
                    versions=Versions(
                        records, blobs, rooms, bus, max_pixels=settings.max_image_pixels
                    ),
                    exporter=Exporter(records, blobs, rooms),
                    producer=producer,
                    producer_view=ProducerView(db),
                    webhooks=webhooks,
                )
                if worker is not None:
                    worker.stop()
                tg.cancel_scope.cancel()
