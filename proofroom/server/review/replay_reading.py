"""What the meeting replay reads from a session's document: pins and layers as plain values.

A log may hold anything a client once wrote (the guard judged it, but a document's values
are still untyped), so every reader here is tolerant: a value of the wrong type reads as
None or a default, never as an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Array, Map

from ...shared import schema


def num(value: Any) -> float | None:
    """A finite number as a float, else None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def text(value: Any) -> str | None:
    """A string, else None."""
    return value if isinstance(value, str) else None


@dataclass
class PinReading:
    """A pin as the replay tells it."""

    x: float | None
    y: float | None
    text: str
    status: str
    author: str | None
    created_at: float | None
    updated_at: float | None
    region: Any
    #: comment id -> (author, text, deleted, at)
    thread: dict[str, tuple[str | None, str, bool, float | None]] = field(default_factory=dict)


@dataclass
class LayerReading:
    """A version (layer) as the replay tells it."""

    id: str
    number: int
    pin: str | None
    fix: str | None
    author: str | None
    state: str
    source: str | None
    variant: Any
    created_at: float | None
    #: participant id -> (decision, note, at)
    decisions: dict[str, tuple[str | None, str, float | None]] = field(default_factory=dict)


def read_pin(value: Any) -> PinReading | None:
    """A pin map read into plain values (None when it is not a map)."""
    if not isinstance(value, Map):
        return None
    thread: dict[str, tuple[str | None, str, bool, float | None]] = {}
    comments = value.get(schema.Pin.THREAD)
    if isinstance(comments, Array):
        for comment in comments:
            if not isinstance(comment, Map):
                continue
            cid = text(comment.get(schema.Comment.ID))
            if cid is None:
                continue
            thread[cid] = (
                text(comment.get(schema.Comment.AUTHOR)),
                text(comment.get(schema.Comment.TEXT)) or "",
                bool(comment.get(schema.Comment.DELETED)),
                num(comment.get(schema.Comment.AT)),
            )
    region = value.get(schema.Pin.REGION)
    return PinReading(
        x=num(value.get(schema.Pin.X)),
        y=num(value.get(schema.Pin.Y)),
        text=text(value.get(schema.Pin.TEXT)) or "",
        status=text(value.get(schema.Pin.STATUS)) or "open",
        author=text(value.get(schema.Pin.AUTHOR)),
        created_at=num(value.get(schema.Pin.CREATED_AT)),
        updated_at=num(value.get(schema.Pin.UPDATED_AT)),
        region=region.to_py() if isinstance(region, Array | Map) else region,
        thread=thread,
    )


def read_layer(value: Any, number: int) -> LayerReading | None:
    """A layer map read into plain values (None when it is not one); ``number`` is its v-number."""
    if not isinstance(value, Map):
        return None
    lid = text(value.get(schema.Layer.ID))
    if lid is None:
        return None
    params = value.get(schema.Layer.PARAMS)
    variant = params.get("variant") if isinstance(params, Map) else None
    decisions: dict[str, tuple[str | None, str, float | None]] = {}
    made = value.get(schema.Layer.DECISIONS)
    if isinstance(made, Map):
        for who, d in made.items():
            if isinstance(d, Map | dict):
                get = d.get
                decisions[str(who)] = (
                    text(get("decision")),
                    text(get("note")) or "",
                    num(get("at")),
                )
    return LayerReading(
        id=lid,
        number=number,
        pin=text(value.get(schema.Layer.PIN_ID)),
        fix=text(value.get(schema.Layer.FIX)),
        author=text(value.get(schema.Layer.AUTHOR)),
        state=text(value.get(schema.Layer.STATE)) or "pending",
        source=text(value.get(schema.Layer.SOURCE)),
        variant=num(variant),
        created_at=num(value.get(schema.Layer.CREATED_AT)),
        decisions=decisions,
    )


def read_layers(layers: Array[Any], start: int = 0) -> list[LayerReading | None]:
    """The layers from index ``start`` on (None where one is not a readable layer)."""
    return [read_layer(layers[i], i + 1) for i in range(start, len(layers))]
