"""The Python thin client: the HTTP API and a live, synced session document."""

from .api import ApiClient, ApiError
from .session import SessionClient

__all__ = ["ApiClient", "ApiError", "SessionClient"]
