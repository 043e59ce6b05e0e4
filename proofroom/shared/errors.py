"""The error hierarchy: each error knows its HTTP status, websocket close code and code name."""

from __future__ import annotations

from .protocol import CloseCode


class ProofroomError(Exception):
    """Base of every error the server reports to a client."""

    status: int = 500
    close_code: int = CloseCode.INTERNAL_ERROR
    code: str = "internal"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code.replace("_", " "))
        self.message = message or self.code.replace("_", " ")

    def to_json(self) -> dict[str, dict[str, str]]:
        """The JSON body of an error response."""
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(ProofroomError):
    status, close_code, code = 400, CloseCode.BAD_MESSAGE, "bad_request"


class InvalidImage(BadRequest):
    code = "invalid_image"


class UnknownField(BadRequest):
    """A request named a field the endpoint does not understand (never silently ignored)."""

    code = "unknown_field"


class Unauthorized(ProofroomError):
    status, close_code, code = 401, CloseCode.UNAUTHORIZED, "unauthorized"


class JoinRequired(Unauthorized):
    """A role link's token used as a person's: it is good only for ``POST /api/join``."""

    code = "join_required"


class Forbidden(ProofroomError):
    status, close_code, code = 403, CloseCode.FORBIDDEN, "forbidden"


class NotALink(Forbidden):
    """``POST /api/join`` with a token that already is a person's (or the admin's)."""

    code = "not_a_link"


class NotFound(ProofroomError):
    status, close_code, code = 404, CloseCode.NOT_FOUND, "not_found"


class Conflict(ProofroomError):
    status, close_code, code = 409, CloseCode.FORBIDDEN, "conflict"


class PayloadTooLarge(ProofroomError):
    status, close_code, code = 413, CloseCode.MESSAGE_TOO_BIG, "too_large"


class DocumentTooLarge(PayloadTooLarge):
    close_code, code = CloseCode.DOC_TOO_LARGE, "document_too_large"


class UnsupportedMediaType(ProofroomError):
    status, close_code, code = 415, CloseCode.BAD_MESSAGE, "unsupported_media_type"


class RateLimited(ProofroomError):
    status, close_code, code = 429, CloseCode.RATE_LIMITED, "rate_limited"


class Unavailable(ProofroomError):
    status, close_code, code = 503, CloseCode.ROOM_FULL, "unavailable"


class RoomUnavailable(ProofroomError):
    """A session's live document was unloaded, or could not be stored, mid-request."""

    status, close_code, code = 503, CloseCode.INTERNAL_ERROR, "room_unavailable"


class RoomFull(Unavailable):
    code = "room_full"
