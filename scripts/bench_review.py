"""Review benchmarks for Proofroom (the speed targets of the review workflow).

Scenarios (both by default; pick with ``--scenarios``):

- ``producer``: ``GET /api/producer`` over 1,000 sessions with 100 versions each (target:
  median <= 200 ms), timed over HTTP on loopback against a ``proofroom serve`` process.
  The index is populated directly through its API (``ProducerIndex.ingest``, the same
  statements the live event listener runs) in a temporary data dir: building 100,000 real
  layers through documents and HTTP would take far too long for a benchmark.
- ``decision``: a real server, 50 participants (pycrdt clients over the websocket) in one
  session, N decisions POSTed by an approver one after another; latency from just before
  each POST to the moment each participant's document shows the layer's new state
  (target: p99 <= 20 ms over all (participant, decision) pairs). Participants run in
  ``--workers`` processes; times are ``time.monotonic()``, one clock for all processes.

Everything runs on this machine: the clients compete with the server for CPU.

    .venv/bin/python scripts/bench_review.py            # both, a few minutes
    .venv/bin/python scripts/bench_review.py --quick    # smoke run
    .venv/bin/python scripts/bench_review.py --scenarios decision --decisions 400
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import platform
import queue
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proofroom.client import ApiClient, SessionClient  # noqa: E402
from proofroom.client.api import ApiError, join  # noqa: E402

ADMIN_TOKEN = "pr_admin_bench_review"
READY = re.compile(r"^Proofroom is running at (http://127\.0\.0\.1:\d+)/")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def png(color: tuple[int, int, int], size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, format="PNG")
    return out.getvalue()


class Server:
    """``proofroom serve`` on a free port over ``data``; output drained by a thread."""

    def __init__(self, data: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROOFROOM_")}
        env.update(PROOFROOM_ADMIN_TOKEN=ADMIN_TOKEN, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proofroom", "serve", "--port", "0", "--data", str(data)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        self.url = ""
        deadline = time.monotonic() + 60
        while not self.url:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if match := READY.match(line):
                self.url = match[1]
        while True:  # the ready line comes just before uvicorn serves the socket
            try:
                httpx.get(f"{self.url}/healthz", timeout=5)
                return
            except httpx.TransportError:
                time.sleep(0.01)

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------------
# The producer's view


async def populate(data: Path, sessions: int, versions: int, pins: int) -> dict[str, Any]:
    """Fill the producer's index of ``data`` through its API; return what was made."""
    from proofroom.server.review import events as ev
    from proofroom.server.review.producer import ProducerIndex
    from proofroom.server.store import Database

    rng = random.Random(4)
    per_pin = versions // pins
    start = time.time() - sessions * 3600.0
    made = {"sessions": sessions, "versions": 0, "approved": 0, "pending": 0}
    async with Database(data / "proofroom.sqlite3") as db:
        index = ProducerIndex(db)
        for i in range(sessions):
            sid = f"bench{i:05d}"
            t = start + i * 3600.0
            batch = [ev.Event(ev.SESSION_CREATED, sid, {"title": f"Campaign {i}", "at": t}, t)]
            for p in range(pins):
                pin = f"p{p}"
                t += rng.uniform(1, 30)
                batch.append(ev.Event(ev.PIN_CREATED, sid, {"pin": pin, "created_at": t}, t))
                approve_round = rng.randrange(per_pin) if rng.random() < 0.7 else None
                for v in range(per_pin):
                    layer = f"l{p}_{v}"
                    t += rng.uniform(10, 300)
                    batch.append(
                        ev.Event(ev.LAYER_CREATED, sid, {"layer": layer, "pin": pin, "at": t}, t)
                    )
                    made["versions"] += 1
                    if approve_round is None or v > approve_round:
                        made["pending"] += 1
                        continue
                    state = "approved" if v == approve_round else "changes_requested"
                    made["approved"] += state == "approved"
                    t += rng.uniform(10, 600)
                    decision = {"layer": layer, "pin": pin, "state": state, "at": t}
                    batch.append(ev.Event(ev.LAYER_DECISION, sid, decision, t))
                    if state == "approved":
                        batch.append(ev.Event(ev.PIN_RESOLVED, sid, {"pin": pin}, t))
            await index.ingest(batch)
    return made


def time_requests(url: str, path: str, n: int) -> tuple[list[float], Any]:
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
    ) as http:
        for _ in range(2):  # warm up (SQLite page cache, code paths)
            http.get(path).raise_for_status()
        times = []
        body = None
        for _ in range(n):
            t0 = time.perf_counter()
            response = http.get(path)
            body = response.json()
            times.append(time.perf_counter() - t0)
            response.raise_for_status()
    return times, body


def bench_producer(opts: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        data = Path(tmp) / "data"
        t0 = time.monotonic()
        made = asyncio.run(populate(data, opts.sessions, opts.versions, opts.pins))
        populate_s = time.monotonic() - t0
        print(
            f"  index populated directly through ProducerIndex.ingest: {made['sessions']} "
            f"sessions, {made['versions']} versions in {populate_s:.0f} s",
            flush=True,
        )
        server = Server(data)
        try:
            results: dict[str, Any] = {"populate_s": populate_s, "made": made}
            for name, path in [
                ("all", f"/api/producer?limit={opts.sessions}"),
                (
                    "state=pending, sort=-time_in_review",
                    "/api/producer?state=pending&sort=-time_in_review",
                ),
                ("q=Campaign 12, limit=50", "/api/producer?q=Campaign%2012&limit=50"),
                ("one session", "/api/producer/sessions/bench00007"),
            ]:
                times, body = time_requests(server.url, path, opts.requests)
                entry = {
                    "median_ms": statistics.median(times) * 1000,
                    "min_ms": min(times) * 1000,
                    "max_ms": max(times) * 1000,
                }
                if "sessions" in body:
                    entry["sessions"] = len(body["sessions"])
                    entry["versions_total"] = body["totals"]["versions"]["total"]
                results[name] = entry
                print(f"  GET {path}: {json.dumps(entry)}", flush=True)
            assert results["all"]["sessions"] == opts.sessions
            assert results["all"]["versions_total"] == made["versions"]
        finally:
            server.stop()
    return results


# ---------------------------------------------------------------------------------------------
# A decision reaching every participant


def participant_worker(
    url: str,
    session_id: str,
    token: str,
    count: int,
    layers: int,
    ready: Any,
    seen: Any,
    stop: Any,
) -> None:
    """Run ``count`` participants; report (layer id, time seen) the first time each of them
    sees each layer leave ``pending``."""
    asyncio.run(_participants(url, session_id, token, count, layers, ready, seen, stop))


async def _participants(
    url: str,
    session_id: str,
    token: str,
    count: int,
    layers: int,
    ready: Any,
    seen: Any,
    stop: Any,
) -> None:
    from pycrdt import Map

    clients = [SessionClient(url, session_id, token) for _ in range(count)]
    subscriptions = []

    def watcher(decided: set[str]) -> Any:
        # One parameter only: pycrdt passes the transaction to a two-parameter callback.
        def on_change(events: list[Any]) -> None:
            now = time.monotonic()
            for event in events:
                target = event.target
                if isinstance(target, Map) and "state" in event.keys:
                    layer_id = target.get("id")
                    if target.get("state") != "pending" and layer_id not in decided:
                        decided.add(layer_id)
                        seen.put((layer_id, now))

        return on_change

    for client in clients:
        await client.connect(timeout=30)
        await client.wait_for(lambda c=client: len(c.layers) >= layers, timeout=30)
        subscriptions.append(client.layers.observe_deep(watcher(set())))
    ready.put(count)
    await asyncio.to_thread(stop.wait)
    for client in clients:
        await client.disconnect()


async def decision_run(url: str, opts: argparse.Namespace) -> dict[str, Any]:
    async with ApiClient(url, ADMIN_TOKEN) as admin:
        created = await admin.create_session(png((200, 200, 200)), title="Latency")
    sid = created["id"]
    # A role link is a door: one bench participant joins each role's link under a name.
    tokens = {
        role: (await join(link, f"Bench {role}")).token for role, link in created["links"].items()
    }
    async with ApiClient(url, tokens["editor"]) as editor_api:
        editor = (await editor_api.whoami())["user_id"]
        async with SessionClient(url, sid, tokens["editor"]) as doc:
            doc.add_pin("p1", x=10, y=10, text="tone it down", author=editor)
            await doc.flush()
        layer_ids: list[str] = []
        while len(layer_ids) < opts.decisions:
            color = (len(layer_ids) % 200, 50, 100)
            try:
                reply = await editor_api.json(
                    "POST",
                    f"/api/sessions/{sid}/pins/p1/versions",
                    files={"image": ("v.png", png(color))},
                )
            except ApiError as err:  # the pin reaches the server a moment after the flush
                if err.status != 404:
                    raise
                await asyncio.sleep(0.01)
                continue
            layer_ids.append(reply["layer"])

    ctx = multiprocessing.get_context("spawn")
    ready, seen, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [opts.participants // opts.workers] * opts.workers
    shares[0] += opts.participants - sum(shares)
    procs = [
        ctx.Process(
            target=participant_worker,
            args=(url, sid, tokens["viewer"], n, len(layer_ids), ready, seen, stop),
            daemon=True,
        )
        for n in shares
        if n
    ]
    for proc in procs:
        proc.start()
    joined = 0
    while joined < opts.participants:
        joined += await asyncio.to_thread(ready.get, True, 120)
    print(f"  {joined} participants synced with {len(layer_ids)} pending versions", flush=True)

    sent: dict[str, float] = {}
    latencies: list[float] = []
    per_decision: list[float] = []
    try:
        async with ApiClient(url, tokens["approver"]) as approver:
            for n, layer in enumerate(layer_ids):
                decision = (
                    "approve" if n % 3 == 0 else ("reject" if n % 3 == 1 else "request_changes")
                )
                path = f"/api/sessions/{sid}/layers/{layer}/decision"
                sent[layer] = time.monotonic()
                await approver.json("POST", path, json={"decision": decision})
                arrivals = []
                while len(arrivals) < opts.participants:
                    layer_id, at = await asyncio.to_thread(seen.get, True, 30)
                    assert layer_id == layer, (layer_id, layer)
                    arrivals.append(at - sent[layer])
                latencies += arrivals
                per_decision.append(max(arrivals))
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=30)
    ms = [x * 1000 for x in latencies]
    return {
        "participants": opts.participants,
        "decisions": len(layer_ids),
        "pairs": len(ms),
        "p50_ms": percentile(ms, 0.50),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms),
        "last_participant_p50_ms": percentile([x * 1000 for x in per_decision], 0.50),
        "workers": len(procs),
    }


def bench_decision(opts: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        server = Server(Path(tmp) / "data")
        try:
            result = asyncio.run(decision_run(server.url, opts))
        finally:
            server.stop()
    print(f"  {json.dumps(result)}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default="producer,decision")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=100, help="versions per session")
    parser.add_argument("--pins", type=int, default=25, help="pins per session")
    parser.add_argument("--requests", type=int, default=15, help="timed requests per query")
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1, help="participant processes")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    opts = parser.parse_args()
    if opts.quick:
        opts.sessions, opts.requests, opts.decisions = 50, 5, 20
    print(
        f"bench_review on {platform.node()}: {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        flush=True,
    )
    results: dict[str, Any] = {}
    wanted = opts.scenarios.split(",")
    if "producer" in wanted:
        print(f"producer's view: {opts.sessions} sessions x {opts.versions} versions", flush=True)
        results["producer"] = bench_producer(opts)
        median = results["producer"]["all"]["median_ms"]
        print(f"  -> all sessions: median {median:.1f} ms (target <= 200 ms)", flush=True)
    if "decision" in wanted:
        print(
            f"decision latency: {opts.participants} participants, {opts.decisions} decisions",
            flush=True,
        )
        results["decision"] = bench_decision(opts)
        print(f"  -> p99 {results['decision']['p99_ms']:.1f} ms (target <= 20 ms)", flush=True)
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
