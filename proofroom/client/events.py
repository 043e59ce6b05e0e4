"""Reading a server-sent event stream (``GET /api/events``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerEvent:
    """One message of the stream: ``event`` is its type (``ready``, ``layer.decision``...)."""

    event: str
    data: Any
    id: str | None = None


async def parse_sse(lines: AsyncIterable[str]) -> AsyncIterator[ServerEvent]:
    """Messages from the stream's lines (comments and ``retry:`` are skipped)."""
    event, data, event_id = "message", list[str](), None
    async for line in lines:
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    value: Any = json.loads(text)
                except ValueError:
                    value = text
                yield ServerEvent(event, value, event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value_text = line.partition(":")
        value_text = value_text.removeprefix(" ")
        if name == "event":
            event = value_text
        elif name == "data":
            data.append(value_text)
        elif name == "id":
            event_id = value_text
