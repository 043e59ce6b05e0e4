"""The worker loop: claim a job, run it in a thread, report progress, finish exactly once.

What a job *does* is the runner's business (the review layer); the worker owns the queue
mechanics: leases and heartbeats, cancellation, retries, one job per device at a time,
progress throttled to a few updates per second and handed back to the event loop.

Two lanes: ``local`` jobs (CPU and GPU engines) run one at a time on this machine's device;
``hosted`` jobs spend their time waiting on a vendor's API, so up to ``hosted_concurrency``
of them run at once beside the local one and never hold it up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import anyio.to_thread

from ...shared.errors import ProofroomError
from ..engines.base import JobCancelled
from .queue import Job, JobQueue

logger = logging.getLogger(__name__)

#: ``work(progress)``: the blocking part of a job; ``progress(step, total, preview)``.
Work = Callable[[Callable[[int, int, Any], None]], Any]


class JobRunner(Protocol):
    """What the worker needs from the layer that knows what a job means."""

    async def prepare(self, job: Job) -> Work:
        """Load the job's inputs; return the blocking work. Raise ProofroomError to fail it."""

    async def started(self, job: Job) -> None: ...

    async def progress(self, job: Job, step: int, total: int, preview: Any) -> None: ...

    async def result(self, job: Job, output: Any) -> tuple[str, dict[str, Any]]:
        """Store the work's output; return (layer id, the layer to publish)."""

    async def publish(self, job: Job, layer: dict[str, Any]) -> None:
        """Put the layer in the document (idempotent: a job id yields one layer)."""

    async def stopped(self, job: Job) -> None:
        """The job left the running state without a layer (failed, cancelled, requeued)."""


class Worker:
    """Runs local jobs one at a time and hosted ones up to ``hosted_concurrency`` beside
    them; call :meth:`run` in a task group."""

    def __init__(
        self,
        queue: JobQueue,
        runner: JobRunner,
        *,
        node: str = "embedded",
        lease_seconds: float = 30.0,
        progress_interval: float = 0.2,
        hosted_concurrency: int = 4,
    ) -> None:
        self.queue = queue
        self.runner = runner
        self.node = node
        self.owner = f"{node}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = lease_seconds
        self.progress_interval = progress_interval
        self._cancel_flags: dict[str, threading.Event] = {}
        #: One job per device at a time: a local job's engine call holds this.
        self.device = anyio.CapacityLimiter(1)
        #: Hosted calls in flight at once (threads that mostly wait on the network).
        self.hosted_concurrency = max(1, hosted_concurrency)
        self.hosted = anyio.CapacityLimiter(self.hosted_concurrency)
        #: The local job running now, if any.
        self.current: Job | None = None
        #: Every job running now, local and hosted, by id.
        self.running: dict[str, Job] = {}

    def stop(self) -> None:
        """Shutting down: stop the running job at its next step (it is requeued on restart)."""
        for flag in self._cancel_flags.values():
            flag.set()

    def cancel(self, job_id: str) -> None:
        """Stop a running job at its next step (the queue already marked it cancelled)."""
        flag = self._cancel_flags.get(job_id)
        if flag is not None:
            flag.set()

    async def run(self) -> None:
        """Claim and run jobs until cancelled: one local job at a time, hosted ones beside."""
        for job in await self.queue.release_owner(f"{self.node}:", keep=self.owner):
            await self.runner.stopped(job)
        for job in await self.queue.unpublished():
            await self._publish(job)
        next_expiry = 0.0
        local_busy = False
        hosted_busy = 0

        async def run_local(job: Job) -> None:
            nonlocal local_busy
            try:
                await self.run_job(job)
            finally:
                local_busy = False
                self.queue.wakeup.set()  # a slot is free: look for the next job

        async def run_hosted(job: Job) -> None:
            nonlocal hosted_busy
            try:
                await self.run_job(job)
            finally:
                hosted_busy -= 1
                self.queue.wakeup.set()

        async with anyio.create_task_group() as tg:
            while True:
                if time.monotonic() >= next_expiry:
                    for job in await self.queue.expire_leases():
                        await self.runner.stopped(job)
                    next_expiry = time.monotonic() + self.lease_seconds / 4
                self.queue.wakeup.clear()
                claimed_any = False
                if not local_busy:
                    claimed = await self.queue.claim(self.owner, self.lease_seconds, "local")
                    if claimed is not None:
                        local_busy = claimed_any = True
                        tg.start_soon(run_local, claimed)
                while hosted_busy < self.hosted_concurrency:
                    claimed = await self.queue.claim(self.owner, self.lease_seconds, "hosted")
                    if claimed is None:
                        break
                    hosted_busy += 1
                    claimed_any = True
                    tg.start_soon(run_hosted, claimed)
                if claimed_any:
                    await anyio.lowlevel.checkpoint()  # let the new jobs start first
                    continue
                with anyio.move_on_after(self.lease_seconds / 2):
                    await self.queue.wakeup.wait()

    async def run_job(self, job: Job) -> None:
        """Run one claimed job to its end."""
        local = job.lane != "hosted"
        if local:
            self.current = job
        self.running[job.id] = job
        flag = self._cancel_flags[job.id] = threading.Event()
        try:
            await self._run(job, flag)
        finally:
            self._cancel_flags.pop(job.id, None)
            self.running.pop(job.id, None)
            if local:
                self.current = None

    async def _run(self, job: Job, flag: threading.Event) -> None:
        await self.runner.started(job)
        try:
            work = await self.runner.prepare(job)
        except ProofroomError as exc:
            await self._fail(job, exc.message, retry=False)
            return
        updates: asyncio.Queue[tuple[int, int, Any]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        last = 0.0

        def progress(step: int, total: int, preview: Any) -> None:
            nonlocal last
            if flag.is_set():
                raise JobCancelled(job.id)
            now = time.monotonic()
            if step >= total or now - last >= self.progress_interval:
                last = now
                loop.call_soon_threadsafe(updates.put_nowait, (step, total, preview))

        output: Any = None
        error: tuple[str, bool] | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat, job, flag)
            tg.start_soon(self._report, job, updates)
            try:
                limiter = self.hosted if job.lane == "hosted" else self.device
                output = await anyio.to_thread.run_sync(work, progress, limiter=limiter)
            except JobCancelled:
                error = ("cancelled", False)
            except ProofroomError as exc:
                error = (exc.message, False)
            except Exception as exc:
                logger.exception("job %s crashed", job.id)
                error = (f"{type(exc).__name__}: {exc}", True)
            tg.cancel_scope.cancel()
        while not updates.empty():  # the last step's report
            step, total, preview = updates.get_nowait()
            await self.runner.progress(job, step, total, preview)
        if error is not None:
            if flag.is_set():
                fresh = await self.queue.get(job.id)
                await self.runner.stopped(fresh or job)
            else:
                await self._fail(job, error[0], retry=error[1])
            return
        layer_id, layer = await self.runner.result(job, output)
        done = await self.queue.complete(job.id, self.owner, layer_id, layer)
        if done is None:  # cancelled (or lost) while finishing: no layer
            fresh = await self.queue.get(job.id)
            await self.runner.stopped(fresh or job)
            return
        await self._publish(done)

    async def _publish(self, job: Job) -> None:
        assert job.result is not None
        await self.runner.publish(job, job.result)
        await self.queue.mark_published(job.id)

    async def _fail(self, job: Job, message: str, *, retry: bool) -> None:
        failed = await self.queue.fail(job.id, self.owner, message, retry=retry)
        await self.runner.stopped(failed or job)

    async def _heartbeat(self, job: Job, flag: threading.Event) -> None:
        while True:
            await anyio.sleep(self.lease_seconds / 3)
            if not await self.queue.heartbeat(job.id, self.owner, self.lease_seconds):
                flag.set()  # cancelled elsewhere, or the lease was lost
                return

    async def _report(self, job: Job, updates: asyncio.Queue[tuple[int, int, Any]]) -> None:
        while True:
            step, total, preview = await updates.get()
            while not updates.empty():  # only the newest matters
                step, total, preview = updates.get_nowait()
            await self.runner.progress(job, step, total, preview)
