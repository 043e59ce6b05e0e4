"""Persistence: SQLite (aiosqlite, WAL) for metadata and the document log, files for blobs."""

from .blobs import BlobStore
from .db import Database

__all__ = ["BlobStore", "Database"]
