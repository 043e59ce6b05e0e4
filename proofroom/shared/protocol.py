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
    #: The client's copy holds a change the server refused (or skipped part of its own
    #: history): it must drop its copy and sync again.
    OUT_OF_SYNC = 4409
    DOC_TOO_LARGE = 4413
    RATE_LIMITED = 4429
    #: One connection introduced more presence client ids than allowed.
    PRESENCE_CLIENTS = 4430
    #: A presence state larger than allowed.
    PRESENCE_STATE_TOO_LARGE = 4431
    #: The session's presence table is full.
    PRESENCE_FULL = 4432
    ROOM_FULL = 4503
