"""Content-addressed blob store: files named by their sha256, written atomically."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import anyio.to_thread

from ...shared.errors import NotFound

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def is_blob_id(value: object) -> bool:
    """Whether ``value`` looks like a blob id (lower-case sha256 hex)."""
    return isinstance(value, str) and _SHA256.match(value) is not None


class BlobStore:
    """Immutable blobs in ``root/ab/cdef...``; identical content is stored once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        """Where a blob lives (whether or not it exists)."""
        if not is_blob_id(blob_id):
            raise NotFound("no such blob")
        return self.root / blob_id[:2] / blob_id[2:]

    async def put(self, data: bytes, *, durable: bool = True) -> str:
        """Store ``data``; return its blob id. ``durable=False`` skips the fsync (previews)."""
        return await anyio.to_thread.run_sync(self.put_sync, data, durable)

    def put_sync(self, data: bytes, durable: bool = True) -> str:
        """Blocking :meth:`put`, for worker threads."""
        blob_id = hashlib.sha256(data).hexdigest()
        target = self.path(blob_id)
        if target.exists():
            return blob_id
        target.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return blob_id

    async def get(self, blob_id: str) -> bytes:
        """The bytes of a blob; NotFound if absent."""
        path = self.path(blob_id)
        try:
            return await anyio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            raise NotFound("no such blob") from None

    def exists(self, blob_id: str) -> bool:
        """Whether a blob is stored."""
        return is_blob_id(blob_id) and self.path(blob_id).exists()
