#!/usr/bin/env python3
"""What meeting replay costs the server: ``review.replay.replay()`` on a synthetic log.

The log is built the way a meeting writes it: each pin is one update plus two replies;
each version is one update, ``--job-ticks`` job-progress updates (the ``jobs`` root, which
the replay skips), a decision and a state change. Medians over ``--repeat`` runs, in ms.

    .venv/bin/python scripts/bench_replay.py --pins 500 --versions 200 --job-ticks 10
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from pycrdt import Array, Doc, Map

from proofroom.server.review.replay import LoggedUpdate, replay


def build(pins: int, versions: int, job_ticks: int) -> list[LoggedUpdate]:
    doc: Doc[Any] = Doc()
    pin_map = doc.get("pins", type=Map)
    layers = doc.get("layers", type=Array)
    jobs = doc.get("jobs", type=Map)
    tail: list[LoggedUpdate] = []
    clock = [1_000.0]

    def logged(change: Callable[[float], None]) -> None:
        before = doc.get_state()
        with doc.transaction():
            change(clock[0])
        tail.append(LoggedUpdate(doc.get_update(before), clock[0]))
        clock[0] += 1

    def new_pin(i: int, at: float) -> None:
        pin_map[f"p{i}"] = Map(
            {
                "x": float(i),
                "y": float(i),
                "author": "u1",
                "text": f"pin {i}",
                "status": "open",
                "created_at": at,
                "thread": Array(),
            }
        )

    def reply(i: int, r: int, at: float) -> None:
        pin_map[f"p{i}"]["thread"].append(
            Map({"id": f"c{i}_{r}", "author": "u2", "text": "ok", "at": at})
        )

    def version(v: int, at: float) -> None:
        layer = {"id": f"l{v}", "pin_id": f"p{v % pins}", "fix": f"f{v}", "author": "u2"}
        layers.append(Map({**layer, "created_at": at, "state": "pending", "decisions": Map()}))

    for i in range(pins):
        logged(lambda at, i=i: new_pin(i, at))
        for r in range(2):
            logged(lambda at, i=i, r=r: reply(i, r, at))
    for v in range(versions):
        logged(lambda at, v=v: version(v, at))
        for k in range(job_ticks):
            logged(lambda _at, v=v, k=k: jobs.__setitem__(f"j{v}", Map({"step": float(k)})))
        logged(
            lambda at, v=v: layers[v]["decisions"].__setitem__(
                "u3", {"decision": "approve", "note": "", "at": at}
            )
        )
        logged(lambda _at, v=v: layers[v].__setitem__("state", "approved"))
    return tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pins", type=int, default=500)
    parser.add_argument("--versions", type=int, default=200)
    parser.add_argument("--job-ticks", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()
    tail = build(opts.pins, opts.versions, opts.job_ticks)
    names = {"u1": "A", "u2": "B", "u3": "C"}
    runs: list[float] = []
    events: list[Any] = []
    for _ in range(opts.repeat):
        started = time.perf_counter()
        events = replay(None, tail, names, created_at=0.0)
        runs.append((time.perf_counter() - started) * 1000)
    print(f"# {platform.machine()}, python {platform.python_version()}")
    print(
        f"{opts.pins} pins, {opts.versions} versions, {len(tail)} updates -> {len(events)}"
        f" events: median {statistics.median(runs):.0f} ms"
        f" (runs: {', '.join(f'{r:.0f}' for r in runs)})"
    )


if __name__ == "__main__":
    main()
