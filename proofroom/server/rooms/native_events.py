"""The one place that uses pycrdt's private names: native deep-observer events.

pycrdt converts every native event into its typed Python event before a deep observer sees
it; for most traffic (a writer editing fields of a pin) that conversion cost more than the
guard's whole check (sync benchmark). This adapter subscribes natively and converts only
when asked. pycrdt is pinned below 0.15; if its internals move, :data:`AVAILABLE` is False
and the guard uses the public ``observe_deep`` path, which is slower but equivalent (CI runs
the sync tests both ways with ``PROOFROOM_FAST_PATHS=off``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:  # pycrdt's internals: its native map event type and its typed conversion.
    from pycrdt._base import observe_deep_callback as _observe_deep_callback
    from pycrdt._pycrdt import MapEvent as _NativeMapEvent
except ImportError:  # pragma: no cover - depends on the installed pycrdt
    AVAILABLE = False
    _NATIVE_MAP_EVENT: Any = None
else:
    AVAILABLE = True
    _NATIVE_MAP_EVENT = _NativeMapEvent


def is_native_map_event(event: Any) -> bool:
    """True for a native map event, whose ``path`` and ``keys`` carry plain values."""
    return type(event) is _NATIVE_MAP_EVENT


def observe_deep_native(root: Any, callback: Callable[[list[Any]], None]) -> Any:
    """Subscribe ``callback`` to the native events of ``root`` and everything under it."""
    return root.integrated.observe_deep(callback)


def typed(callback: Callable[[list[Any]], None], doc: Any, events: list[Any]) -> None:
    """Convert native events to pycrdt's typed ones and call ``callback`` with them."""
    _observe_deep_callback(callback, doc, 1, events)
