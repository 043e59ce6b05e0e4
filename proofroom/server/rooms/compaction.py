"""Merging a room's snapshot with the updates logged since, away from the event loop.

A compaction used to encode the whole live document on the loop (``doc.get_update()``: 85 ms
for a 32 MiB document, and every room waited). It now merges bytes the room already holds:
the stored snapshot and the updates logged after it, a pure function of bytes
(``pycrdt.merge_updates``). That merge does not release the GIL, measured on the development
machine (2 vCPUs) with the loop sampling its own lag while a thread merged: 270 ms held for
the 302 updates of a 32 MiB document, 55 ms for a 16 MiB snapshot plus a single update. Its
cost follows the snapshot, so merging in chunks would not bound it; in a thread it stalls
the loop exactly as long as inline.

So a document of up to :data:`PROCESS_BYTES` merges in a worker thread (a 1 MiB merge holds
the GIL for about 2-9 ms, no more than an inline one), and a larger one in a child process.
The bytes travel through a file that the worker thread writes and reads back with
``os.writev`` / ``read``, which release the GIL, so the loop itself copies nothing: with a
pipe (``ProcessPoolExecutor`` arguments, ``anyio.to_process``) pickling and unpickling 32 MiB
stalled it 20-70 ms at each end. The child is a fresh interpreter that imports pycrdt only
(``python -c``), started per merge: no pool to keep or shut down, nothing of the server
inherited, and none of multiprocessing's re-import of the parent's ``__main__`` (which for
``python -m proofroom`` would start a server). It costs about 0.1 s of another core's time,
next to merges of a few hundred milliseconds that happen once every few hundred updates.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pycrdt import merge_updates

logger = logging.getLogger(__name__)

#: Documents (snapshot plus tail, bytes) above this merge in a child process.
PROCESS_BYTES = 1 << 20
_LENGTH = struct.Struct("<Q")
#: Most buffers one ``os.writev`` call takes (IOV_MAX on Linux).
_IOV_MAX = 1024

#: A merge in a child process that takes longer than this has failed.
PROCESS_TIMEOUT_S = 600.0
#: The child: read length-prefixed parts from argv[1], write their merge to argv[2].
_CHILD = """
import struct, sys
from pycrdt import merge_updates
data = open(sys.argv[1], "rb").read()
parts, offset = [], 0
while offset < len(data):
    (length,) = struct.unpack_from("<Q", data, offset)
    parts.append(data[offset + 8 : offset + 8 + length])
    offset += 8 + length
open(sys.argv[2], "wb").write(merge_updates(*parts))
"""

#: Called on the event loop with the merged snapshot, or the error the merge failed with.
MergeCallback = Callable[[bytes | BaseException], None]


class Compactor:
    """Runs merges one at a time; use as ``async with Compactor() as compactor``."""

    def __init__(self, *, process_bytes: int = PROCESS_BYTES) -> None:
        self.process_bytes = process_bytes
        #: Merges done in a child process (the tests check which path ran).
        self.process_merges = 0
        # One merge at a time: a big one takes a whole core of a small machine.
        self._limiter = anyio.CapacityLimiter(1)
        self._tg: TaskGroup | None = None
        self._requests: MemoryObjectSendStream[tuple[list[bytes], MergeCallback]]
        self._lock = threading.Lock()
        self._dir: Path | None = None
        self._files = 0

    async def __aenter__(self) -> Compactor:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        # Rooms ask for merges from a commit's callback, which runs on the loop but outside
        # any task, where anyio cannot start one (anyio 4.16 refuses: no async backend).
        # So requests queue up here for a task that starts the merges.
        self._requests, receive = anyio.create_memory_object_stream[
            tuple[list[bytes], MergeCallback]
        ](math.inf)
        self._tg.start_soon(self._start_merges, receive)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        # Rooms wait for their merges before they count as drained; one still running
        # here belongs to a room that timed out draining, and is abandoned.
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(exc_type, exc, tb)
        self._requests.close()
        await anyio.to_thread.run_sync(self._close)

    def start(self, parts: Sequence[bytes], done: MergeCallback) -> None:
        """Merge ``parts`` in the background; ``done`` gets the result on the loop."""
        assert self._tg is not None, "use the compactor as `async with Compactor()`"
        self._requests.send_nowait((list(parts), done))

    async def _start_merges(
        self, requests: MemoryObjectReceiveStream[tuple[list[bytes], MergeCallback]]
    ) -> None:
        assert self._tg is not None
        async with requests:
            async for parts, done in requests:
                self._tg.start_soon(self._run, parts, done)

    async def merge(self, parts: Sequence[bytes]) -> bytes:
        """The updates merged into one, computed off the event loop."""
        return await anyio.to_thread.run_sync(self._merge, list(parts), limiter=self._limiter)

    async def _run(self, parts: list[bytes], done: MergeCallback) -> None:
        outcome: bytes | BaseException
        try:
            outcome = await self.merge(parts)
        except Exception as exc:
            outcome = exc
        try:
            done(outcome)
        except Exception:  # a room's bookkeeping must not take the other merges down
            logger.exception("a compaction callback failed")

    # -- in the worker thread -------------------------------------------------------------

    def _merge(self, parts: list[bytes]) -> bytes:
        if sum(len(part) for part in parts) <= self.process_bytes:
            return merge_updates(*parts)
        source, target = self._paths()
        try:
            _write_parts(source, parts)
            child = subprocess.run(
                [sys.executable, "-c", _CHILD, str(source), str(target)],
                capture_output=True,
                timeout=PROCESS_TIMEOUT_S,
                check=False,
            )
            if child.returncode != 0:
                error = child.stderr.decode(errors="replace").strip().splitlines()[-1:]
                raise RuntimeError(f"the merge process exited with {child.returncode}: {error}")
            self.process_merges += 1
            return target.read_bytes()
        finally:
            for path in (source, target):
                path.unlink(missing_ok=True)

    def _paths(self) -> tuple[Path, Path]:
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="proofroom-compact-"))
            self._files += 1
            return self._dir / f"{self._files}.in", self._dir / f"{self._files}.out"

    def _close(self) -> None:
        with self._lock:
            directory, self._dir = self._dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def _write_parts(path: Path, parts: list[bytes]) -> None:
    """Length-prefixed parts; ``os.writev`` copies them without holding the GIL."""
    buffers: list[bytes] = []
    for part in parts:
        buffers += (_LENGTH.pack(len(part)), part)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for first in range(0, len(buffers), _IOV_MAX):
            chunk = buffers[first : first + _IOV_MAX]
            expected = sum(len(buffer) for buffer in chunk)
            written = os.writev(fd, chunk)
            if written != expected:  # a short write (rare on a file): finish the chunk
                rest = memoryview(b"".join(chunk))[written:]
                while rest:
                    rest = rest[os.write(fd, rest) :]
    finally:
        os.close(fd)
