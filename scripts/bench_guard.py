#!/usr/bin/env python3
"""What the write guard's check-before-apply costs, per update, beside a plain apply.

For documents of several sizes (pins with replies, as a review builds them), it times:

- ``plain``: ``Doc.apply_update`` of a pin-text edit on the live document alone (what a
  server without a guard does);
- ``accepted``: the guard's whole path for the same edit (read the update's shape, then
  apply it to the room's document under the guard's observers);
- ``refused``: an edit of someone else's pin, refused after the document took it, with the
  document rebuilt from the log's bytes (what an attacker's refused write costs the room);
- ``refused_early``: a write to an unknown root, refused from the update's bytes alone.

Medians over many repetitions, in microseconds; ``accepted / plain`` is the ratio that the
guard adds. Usage: ``scripts/bench_guard.py [--sizes 10,1000,10000] [--repeat 300]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

from pycrdt import Array, Doc, Map, merge_updates

from proofroom.server.identity import Identity
from proofroom.server.rooms.guard import Guard, new_document
from proofroom.shared.enums import Role

WRITER = Identity("u_writer", "Writer", Role.COMMENTER, "s1")
OTHER = "u_other"


def build(pins: int) -> tuple[Doc[Any], list[bytes]]:
    """A live document with ``pins`` pins (half the writer's, each with two replies)."""
    doc, roots = new_document()
    meta, pin_map = roots["meta"], roots["pins"]
    meta["width"], meta["height"] = 4096.0, 4096.0
    for i in range(pins):
        author = WRITER.user_id if i % 2 == 0 else OTHER
        thread = Array(
            [
                Map({"id": f"c{i}-{k}", "author": OTHER, "text": "reply " * 8, "at": 1.0})
                for k in (0, 1)
            ]
        )
        pin_map[f"p{i}"] = Map(
            {
                "x": 10.0,
                "y": 10.0,
                "author": author,
                "text": "please fix the sky " * 3,
                "status": "open",
                "created_at": 1.0,
                "thread": thread,
            }
        )
    return doc, []


def edits(live: Doc[Any], pin_id: str, count: int) -> list[bytes]:
    """``count`` successive text edits of one pin, made by a client holding the document."""
    client: Doc[Any] = Doc()
    client.apply_update(live.get_update())
    updates: list[bytes] = []
    subscription = client.observe(lambda event: updates.append(event.update))
    pin = client.get("pins", type=Map)[pin_id]
    for i in range(count):
        pin["text"] = f"edit {i}"
    del subscription
    return updates


def median_us(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e6, 1)


def measure(pins: int, repeat: int) -> dict[str, Any]:
    live, _ = build(pins)
    state = live.get_update()
    mine = edits(live, "p0", repeat)
    theirs = edits(live, "p1", 1)[0] if pins > 1 else mine[0]

    # plain: a copy of the live document takes the edits with no checks at all.
    plain_doc: Doc[Any] = Doc()
    plain_doc.apply_update(state)
    plain: list[float] = []
    for update in mine:
        start = time.perf_counter()
        plain_doc.apply_update(update)
        plain.append(time.perf_counter() - start)

    # The guard owns the room's document; after a refusal it rebuilds it from the log's
    # bytes (snapshot and tail), as a room does.
    log = [state]
    guard = Guard(lambda: merge_updates(*log) if len(log) > 1 else log[0])
    guard.load(state)
    accepted: list[float] = []
    for update in mine:
        start = time.perf_counter()
        verdict = guard.check(update, WRITER)
        accepted.append(time.perf_counter() - start)
        assert verdict.accepted, verdict
        log.append(update)

    refused: list[float] = []
    for _ in range(max(5, min(repeat, 2_000_000 // max(1, len(state))))):
        start = time.perf_counter()
        verdict = guard.check(theirs, WRITER)
        refused.append(time.perf_counter() - start)
        assert not verdict.accepted
    stranger: Doc[Any] = Doc()
    stranger.get("evil", type=Map)["x"] = 1
    unknown_root = stranger.get_update()
    early: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        verdict = guard.check(unknown_root, WRITER)
        early.append(time.perf_counter() - start)
        assert not verdict.accepted
    figures = {
        "pins": pins,
        "doc_bytes": len(state),
        "plain_us": median_us(plain),
        "accepted_us": median_us(accepted),
        "refused_us": median_us(refused),
        "refused_early_us": median_us(early),
    }
    figures["accepted_over_plain"] = round(figures["accepted_us"] / figures["plain_us"], 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,1000,10000", help="pins per document")
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    rows = [measure(int(size), args.repeat) for size in args.sizes.split(",")]
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}")
    header = list(rows[0])
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[key]) for key in header))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
