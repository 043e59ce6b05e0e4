"""Turning untrusted request bytes into a JSON object, or a 400 that says what is wrong.

Every endpoint that reads JSON goes through here, so that the limits hold everywhere:
``json.loads`` recurses once per nesting level and raises ``RecursionError`` (a 500) on a
body like ``[[[[...]]]]``, so the depth is measured on the raw bytes *before* decoding; NaN
and Infinity (which Python's json accepts and SQLite, pycrdt and browsers do not) are refused;
lone surrogates (``"\\ud800"``, valid JSON but not encodable as UTF-8) are refused; and an
endpoint names the fields it understands, so a misspelt or unsupported one is a 400 rather
than silently ignored. The web layer reads the stream (web/common.py ``json_body``); the
review layer may call ``check_fields`` on nested objects it validates itself.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from typing import Any

from ..shared.errors import BadRequest, UnknownField

#: Deepest nesting of arrays and objects a request body may have; ours need 3.
MAX_DEPTH = 32

# A JSON string, escapes included (the unrolled form, linear without backtracking).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nests_deeper_than(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether ``data`` nests arrays and objects more than ``limit`` deep, without decoding.

    Strings are cut out first so that brackets inside them do not count; what remains is
    only brackets, scanned once. On malformed input the answer may be wrong, but then the
    decoder refuses the body anyway. Honest bodies have a handful of brackets and take the
    first exit; a hostile 1 MiB one costs about as much as decoding it (~50 ms).
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f"the number {text[:40]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise BadRequest(f"{name} is not a JSON number; send a finite number")


def parse_json(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode a request body (UTF-8 JSON) within the depth limit; BadRequest otherwise."""
    if nests_deeper_than(data, max_depth):
        raise BadRequest(f"the JSON body nests deeper than {max_depth} levels")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_constant)
    except ValueError:
        # Also covers integers longer than Python's int-conversion limit (4300 digits).
        raise BadRequest("the body is not valid JSON") from None
    except RecursionError:  # unreachable after the depth check; kept so it is never a 500
        raise BadRequest(f"the JSON body nests deeper than {max_depth} levels") from None
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("the body holds a string that is not valid Unicode") from None
    return value


def check_fields(body: dict[str, Any], allowed: Collection[str], where: str = "") -> None:
    """Refuse a key the endpoint does not know, naming the ones it does."""
    for key in body:
        if key not in allowed:
            shown = key if len(key) <= 64 else key[:64] + "..."
            place = f" in {where}" if where else ""
            names = ", ".join(sorted(allowed)) or "none"
            raise UnknownField(f"unknown field {shown!r}{place}; allowed: {names}")


def parse_json_object(
    data: bytes, allowed: Collection[str] | None, *, max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    """A request body that must be an object; ``allowed`` None leaves keys to the caller.

    An empty body is an empty object: every endpoint's fields are optional or checked by
    the endpoint, which then says which one is missing.
    """
    if not data.strip():
        return {}
    value = parse_json(data, max_depth=max_depth)
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    if allowed is not None:
        check_fields(value, allowed)
    return value
