"""The contract as JSON for the browser client's build: ``python -m proofroom.shared.export_json``.

The browser bundle embeds this file, so root names, field names, enums, the role table and
the close codes have one source of truth: the definitions in this package.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Any

from . import schema
from .enums import (
    DECISION_ORDER,
    JOB_TRANSITIONS,
    PIN_TRANSITIONS,
    Decision,
    JobKind,
    JobStatus,
    LayerSource,
    LayerState,
    PinStatus,
    RevisionKind,
    RevisionMedia,
    Role,
)
from .permissions import PERMISSIONS, Action
from .protocol import AuthMessage, CloseCode, MessageType, SyncStep

#: Close codes after which reconnecting cannot help (the link or the session is wrong).
PERMANENT_CLOSE_CODES = (
    CloseCode.BAD_MESSAGE,
    CloseCode.UNAUTHORIZED,
    CloseCode.FORBIDDEN,
    CloseCode.NOT_FOUND,
    CloseCode.DOC_TOO_LARGE,
)


def _fields(cls: type) -> dict[str, Any]:
    """Public constants of a schema class: plain names, and frozensets as sorted lists."""
    out: dict[str, Any] = {}
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        out[name] = sorted(value) if isinstance(value, frozenset) else value
    return out


def _enum(members: type[Enum]) -> list[Any]:
    return [m.value for m in members]


def _table(table: dict[Any, frozenset[Any]]) -> dict[str, list[Any]]:
    return {k.value: sorted(v.value for v in vals) for k, vals in table.items()}


def contract() -> dict[str, Any]:
    """Everything a client needs to know about the document, roles and protocol."""
    return {
        "roots": {
            "META": schema.META,
            "PINS": schema.PINS,
            "LAYERS": schema.LAYERS,
            "JOBS": schema.JOBS,
            "REVISIONS": schema.REVISIONS,
        },
        "original_revision": schema.ORIGINAL_REVISION,
        "server_roots": sorted(schema.SERVER_ROOTS),
        "client_roots": sorted(schema.CLIENT_ROOTS),
        "fields": {
            cls.__name__: _fields(cls)
            for cls in (
                schema.Meta,
                schema.Pin,
                schema.Comment,
                schema.Layer,
                schema.Job,
                schema.Revision,
                schema.Awareness,
            )
        },
        "limits": {"MAX_TEXT_CHARS": schema.MAX_TEXT_CHARS, "MAX_ID_CHARS": schema.MAX_ID_CHARS},
        "enums": {
            "Role": _enum(Role),
            "PinStatus": _enum(PinStatus),
            "JobStatus": _enum(JobStatus),
            "Decision": _enum(Decision),
            "LayerState": _enum(LayerState),
            "LayerSource": _enum(LayerSource),
            "JobKind": _enum(JobKind),
            "RevisionKind": _enum(RevisionKind),
            "RevisionMedia": _enum(RevisionMedia),
            "Action": _enum(Action),
        },
        "transitions": {"pin": _table(PIN_TRANSITIONS), "job": _table(JOB_TRANSITIONS)},
        "decision_order": [d.value for d in DECISION_ORDER],
        "permissions": _table(PERMISSIONS),
        "protocol": {
            "MessageType": {m.name: m.value for m in MessageType},
            "SyncStep": {m.name: m.value for m in SyncStep},
            "AuthMessage": {m.name: m.value for m in AuthMessage},
            "CloseCode": {m.name: m.value for m in CloseCode},
            "permanent_close_codes": [c.value for c in PERMANENT_CLOSE_CODES],
        },
    }


def main() -> None:
    json.dump(contract(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
