"""Live sessions: one pycrdt document per session, the y-websocket protocol, the write guard."""

from .manager import RoomManager
from .room import Room

__all__ = ["Room", "RoomManager"]
