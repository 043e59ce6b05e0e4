"""y-websocket message codes and Proofroom's websocket close codes."""

from __future__ import annotations

from enum import IntEnum


class MessageType(IntEnum):
    """First var-uint of every websocket frame (y-websocket protocol)."""

    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3


class SyncStep(IntEnum):
    """Second var-uint of a SYNC frame (y-protocols sync)."""

    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


class AuthMessage(IntEnum):
    """Second var-uint of an AUTH frame (y-protocols auth)."""

    PERMISSION_DENIED = 0


class CloseCode(IntEnum):
    """Websocket close codes the server uses; 4xxx mirror the HTTP status they resemble."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    BAD_MESSAGE = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    TOO_SLOW = 4408
    DOC_TOO_LARGE = 4413
    RATE_LIMITED = 4429
    ROOM_FULL = 4503
