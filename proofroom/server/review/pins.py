"""Pin events from the document: created, resolved, reopened (clients write pins)."""

from __future__ import annotations

from typing import Any

from ...shared import schema
from ...shared.enums import PinStatus
from ..rooms import Room
from . import events


class PinTracker:
    """Turns the room's pin reports into events, remembering each pin's last status."""

    def __init__(self, bus: events.EventBus) -> None:
        self.bus = bus
        self._status: dict[tuple[str, str], Any] = {}

    def __call__(self, room: Room, pins: dict[str, dict[str, Any] | None], initial: bool) -> None:
        for pin_id, fields in pins.items():
            key = (room.session_id, pin_id)
            if fields is None:
                self._status.pop(key, None)
                continue
            status = fields.get(schema.Pin.STATUS)
            if key not in self._status:
                self._status[key] = status
                if not initial:
                    self.bus.publish(
                        events.Event(
                            events.PIN_CREATED,
                            room.session_id,
                            {
                                "pin": pin_id,
                                "author": fields.get(schema.Pin.AUTHOR),
                                "created_at": fields.get(schema.Pin.CREATED_AT),
                                "status": status,
                            },
                        )
                    )
                continue
            if status != self._status[key]:
                self._status[key] = status
                kind = (
                    events.PIN_RESOLVED
                    if status == PinStatus.RESOLVED.value
                    else events.PIN_REOPENED
                )
                self.bus.publish(
                    events.Event(
                        kind, room.session_id, {"pin": pin_id, "by": fields.get(schema.Pin.AUTHOR)}
                    )
                )
