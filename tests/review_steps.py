"""Steps of a review, played over the real HTTP API and websocket (shared by several tests)."""

from __future__ import annotations

from typing import Any

from pycrdt import Array, Map

from proofroom.client import ApiClient, SessionClient
from proofroom.shared.schema import Pin

from .helpers import RunningServer, eventually, png_bytes


async def put_pin(
    client: SessionClient,
    pin_id: str,
    author: str,
    created_at: float,
    region: list[float] | None = None,
) -> None:
    """A pin whose ``created_at`` the test chooses (the time the producer's figures use)."""
    fields: dict[str, Any] = {
        Pin.X: 5,
        Pin.Y: 5,
        Pin.AUTHOR: author,
        Pin.TEXT: f"fix {pin_id}",
        Pin.STATUS: "open",
        Pin.CREATED_AT: created_at,
        Pin.THREAD: Array(),
    }
    if region is not None:
        fields[Pin.REGION] = region
    client.pins[pin_id] = Map(fields)
    await client.flush()


async def wait_for_pin(server: RunningServer, session_id: str, pin_id: str) -> None:
    """Until the server's document has the pin."""
    await eventually(
        lambda: (
            session_id in server.services.rooms.rooms
            and pin_id in server.services.rooms.rooms[session_id].pins
        )
    )


async def upload_version(
    api: ApiClient, session_id: str, pin_id: str, color: tuple[int, int, int]
) -> str:
    """A whole retouched image (64x48, one colour) uploaded as a new version of ``pin_id``."""
    reply = await api.json(
        "POST",
        f"/api/sessions/{session_id}/pins/{pin_id}/versions",
        files={"image": ("v.png", png_bytes(64, 48, color))},
    )
    return str(reply["layer"])


async def decide(
    api: ApiClient, session_id: str, layer_id: str, decision: str, note: str = ""
) -> dict[str, Any]:
    """Record a decision; return the layer as the server answers it."""
    reply = await api.json(
        "POST",
        f"/api/sessions/{session_id}/layers/{layer_id}/decision",
        json={"decision": decision, "note": note},
    )
    return reply["layer"]  # type: ignore[no-any-return]


async def fix(
    api: ApiClient, client: SessionClient, session_id: str, pin_id: str, region: list[int]
) -> str:
    """Ask for a one-variant fix (classical engine) and wait for its layer; return its id."""
    reply = await api.json(
        "POST",
        f"/api/sessions/{session_id}/pins/{pin_id}/fix",
        json={"region": region, "seed": 1, "variants": 1},
    )
    [job_id] = reply["jobs"]
    layer_id = f"l_{job_id}"
    await client.wait_for(
        lambda: any(lay["id"] == layer_id for lay in client.layers.to_py()), timeout=30
    )
    return layer_id
