"""Heavy work beside live rooms: do other rooms' updates wait while one session is busy?

Scenarios (both by default; pick with ``--scenarios``):

- ``upload``: 100 rooms of 3 participants each edit their pins once a second (latency from
  the writer's send to each other participant's decoded receipt). During the measured
  window a 40 MP JPEG creates a new session, a participant pins it, and a 40 MP PNG (the
  same picture with one region repainted) is uploaded as a version of that pin. The other
  rooms' p50 / p99 while the upload runs are set against the same interval of a phase
  without it.
- ``compaction``: the same rooms, beside a session whose document is ``--big-doc-mib`` MiB;
  during the window one participant edits the big document ``--big-rate`` times a second,
  so that the server compacts it every ``--compact-after`` updates. Against a phase with
  the big document idle.

Each round runs both phases on one server, alternating which goes first; the headline is
the median over rounds. The server's loop lag is seen from outside as the round trip of
``GET /healthz``, sent every 20 ms from the benchmark process (a stalled loop answers late).
Clients are the real y-websocket participants of ``scripts/bench_sync.py`` (its worker
processes, server launcher and measurement helpers are reused). Share links go through
``POST /api/join`` where the server has it, and are used as tokens where it answers 404.

    .venv/bin/python scripts/bench_upload.py --json /tmp/upload.json
    # the code before a change, from a worktree of it:
    git worktree add /tmp/before HEAD
    .venv/bin/python scripts/bench_upload.py \\
        --proofroom-cmd "env PYTHONPATH=/tmp/before .venv/bin/python -P -m proofroom"
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import statistics
import sys
import time
from array import array
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from pycrdt import Array, Map

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sync as bs  # the sibling script, as a module

logger = logging.getLogger("bench_upload")

SCENARIOS = ("upload", "compaction")
PROBE_EVERY_S = 0.02
#: Text per pin of the big document: under the schema's 10,000 characters.
BIG_TEXT_CHARS = 9000


# ---------------------------------------------------------------------------------------------
# Images


def photo_like(megapixels: float, seed: int = 1) -> np.ndarray:
    """An RGB picture of about ``megapixels`` (3:2 ratio): gradients plus fine noise."""
    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(megapixels * 1e6 / width)
    rng = np.random.default_rng(seed)
    ys = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = xs.astype(np.uint8)
    pixels[..., 1] = ys.astype(np.uint8)
    pixels[..., 2] = ((xs + ys) / 2).astype(np.uint8)
    pixels += rng.integers(0, 4, size=pixels.shape, dtype=np.uint8)
    return pixels


def encoded(pixels: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    options = {"quality": 92} if fmt == "JPEG" else {"compress_level": 6}
    Image.fromarray(pixels).save(out, format=fmt, **options)
    return out.getvalue()


def upload_images(megapixels: float, cache: Path) -> tuple[bytes, bytes]:
    """The session's JPEG and the version's PNG (its decoded pixels, one region repainted)."""
    base_path = cache / f"base-{megapixels}mp.jpg"
    version_path = cache / f"version-{megapixels}mp.png"
    if not (base_path.exists() and version_path.exists()):
        logger.info("making the %.0f MP test images in %s", megapixels, cache)
        cache.mkdir(parents=True, exist_ok=True)
        base_path.write_bytes(encoded(photo_like(megapixels), "JPEG"))
        with Image.open(base_path) as img:
            pixels = np.array(img.convert("RGB"))
        pixels[200:700, 300:900] = (20, 160, 40)
        version_path.write_bytes(encoded(pixels, "PNG"))
    return base_path.read_bytes(), version_path.read_bytes()


# ---------------------------------------------------------------------------------------------
# People: share links joined (or used as tokens on a server without /api/join)


async def join(http: httpx.AsyncClient, link_token: str, name: str) -> tuple[str, str]:
    """A personal token and user id behind a share link."""
    reply = await http.post(
        "/api/join", json={"name": name}, headers={"Authorization": f"Bearer {link_token}"}
    )
    if reply.status_code in (404, 405):  # a server from before links became doors
        return link_token, await bs.whoami(http, link_token)
    reply.raise_for_status()
    person = reply.json()
    return str(person["token"]), str(person["user_id"])


async def room_specs(server: bs.Server, n_rooms: int, per_room: int) -> list[dict[str, Any]]:
    """Sessions, one joined person per client, and the websocket URL of each."""
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with httpx.AsyncClient(
        base_url=server.http, headers=headers, timeout=60, trust_env=False
    ) as http:
        image = bs.png_bytes()
        sessions = [await bs.create_session(http, f"room {k}", image) for k in range(n_rooms)]
        gate = asyncio.Semaphore(16)

        async def person(cid: int) -> tuple[str, str]:
            link = bs.token_of(sessions[cid // per_room]["links"]["commenter"])
            async with gate:
                return await join(http, link, f"bench {cid}")

        people = await asyncio.gather(*(person(cid) for cid in range(n_rooms * per_room)))
    return [
        {
            "cid": cid,
            "url": f"ws://127.0.0.1:{server.port}/ws/{sessions[cid // per_room]['id']}"
            f"?token={token}",
            "room": cid // per_room,
            "room_size": per_room,
            "user_id": user_id,
            "role": "commenter",
        }
        for cid, (token, user_id) in enumerate(people)
    ]


async def participant(
    http: httpx.AsyncClient, server: bs.Server, session: dict[str, Any], role: str, cid: int
) -> bs.BenchClient:
    """A connected participant of ``session`` through its ``role`` link."""
    token, user_id = await join(http, bs.token_of(session["links"][role]), f"{role} {cid}")
    spec = {
        "cid": cid,
        "url": f"ws://127.0.0.1:{server.port}/ws/{session['id']}?token={token}",
        "user_id": user_id,
        "role": role,
        "token": token,
    }
    client = bs.BenchClient(spec, bs.Recorder(), bs.ClientEvents(), observe=False)
    await client.connect(60.0)
    return client


# ---------------------------------------------------------------------------------------------
# The heavy work of each scenario


async def upload_flow(server: bs.Server, base: bytes, version: bytes) -> dict[str, Any]:
    """Create a 40 MP session, pin it, upload a 40 MP version of that pin; the timings."""
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with httpx.AsyncClient(
        base_url=server.http, headers=headers, timeout=600, trust_env=False
    ) as http:
        started = time.monotonic()
        reply = await http.post(
            "/api/sessions", files={"image": ("big.jpg", base, "image/jpeg")}, data={"title": "big"}
        )
        reply.raise_for_status()
        session = reply.json()
        created = time.monotonic()
        editor = await participant(http, server, session, "editor", 10**6)
        editor.create_pin()
        pin_id = next(iter(editor.pins.keys()))
        auth = {"Authorization": f"Bearer {editor.spec['token']}"}
        path = f"/api/sessions/{session['id']}/pins/{pin_id}/versions"
        pinned = time.monotonic()
        while True:  # the pin is in the server's document once its update committed
            reply = await http.post(
                path, files={"image": ("v.png", version, "image/png")}, headers=auth
            )
            if reply.status_code != 404 or time.monotonic() - pinned > 10:
                break
            await asyncio.sleep(0.05)
        reply.raise_for_status()
        done = time.monotonic()
        await editor.close()
    return {
        "start": started,
        "end": done,
        "create_s": created - started,
        "version_s": done - pinned,
        "total_s": done - started,
    }


async def build_big_document(
    http: httpx.AsyncClient, server: bs.Server, mib: float, batch: int = 150
) -> tuple[bs.BenchClient, dict[str, Any]]:
    """A session whose document holds about ``mib`` MiB of pins; its editor, connected."""
    session = await bs.create_session(http, "big document", bs.png_bytes())
    editor = await participant(http, server, session, "editor", 10**6 + 1)
    author = editor.spec["user_id"]
    n_pins = int(mib * 2**20 / BIG_TEXT_CHARS)
    for first in range(0, n_pins, batch):

        def add(first: int = first) -> None:
            for index in range(first, min(n_pins, first + batch)):
                editor.pins[f"big-{index:06d}"] = Map(
                    {
                        "x": 1.0,
                        "y": 1.0,
                        "author": author,
                        "text": f"{index} " + "x" * (BIG_TEXT_CHARS - 10),
                        "status": "open",
                        "created_at": time.time(),
                        "thread": Array(),
                    }
                )

        editor.write(add)
        await asyncio.sleep(0.3)
    editor.pin = editor.pins["big-000000"]
    logger.info("big document: %d pins, %.1f MiB", n_pins, len(editor.doc.get_update()) / 2**20)
    return editor, session


async def edit_steadily(editor: bs.BenchClient, rate: float, until: float) -> dict[str, Any]:
    """Small edits of the big document at ``rate`` per second (each one logged)."""
    started, seq = time.monotonic(), 0
    next_at = started
    while next_at < until:
        await bs.sleep_until(next_at)
        seq += 1
        editor.write_text(seq)
        next_at += 1 / rate
    return {"start": started, "end": time.monotonic(), "edits": seq}


# ---------------------------------------------------------------------------------------------
# Phases and rounds


async def probe_loop(server: bs.Server, until: float) -> list[tuple[float, float]]:
    """(send time, round trip) of ``GET /healthz`` every 20 ms until ``until``."""
    samples: list[tuple[float, float]] = []
    async with httpx.AsyncClient(base_url=server.http, timeout=30, trust_env=False) as http:
        while (now := time.monotonic()) < until:
            await http.get("/healthz")
            samples.append((now, time.monotonic() - now))
            await bs.sleep_until(now + PROBE_EVERY_S)
    return samples


async def drive(
    server: bs.Server,
    times: dict[str, float],
    plan: list[tuple[int, str]],
    window: float,
    make_action: Callable[[], Callable[[float], Awaitable[dict[str, Any]]]],
) -> tuple[dict[tuple[int, str], dict[str, Any]], list[tuple[float, float]]]:
    """Play the phases back to back inside one measured run; probe the loop throughout."""
    probe = asyncio.create_task(probe_loop(server, times["t_end"]))
    phases = {}
    for index, (number, kind) in enumerate(plan):
        start = times["t_measure"] + index * window
        end = start + window
        await bs.sleep_until(start)
        logger.info("round %d: %s", number + 1, kind)
        info = await make_action()(end) if kind == "with" else {}
        if info and info["end"] > end:
            logger.warning("the heavy work overran its phase by %.1fs", info["end"] - end)
        phases[(number, kind)] = {"start": start, "end": end, "info": info}
    return phases, await probe


class Samples:
    """Every latency of the run (by send time) and every loop probe."""

    def __init__(self, results: list[dict[str, Any]], probes: list[tuple[float, float]]):
        self.latencies, self.sent_at = array("d"), array("d")
        for result in results:
            self.latencies.frombytes(result["latencies"])
            self.sent_at.frombytes(result["sent_at"])
        self.probes = probes

    def figures(self, start: float, length: float) -> dict[str, float]:
        """Latency and probe figures of what was sent in ``[start, start + length)``."""
        end = start + length
        chosen = [
            lat for t, lat in zip(self.sent_at, self.latencies, strict=True) if start <= t < end
        ]
        probes = sorted(rtt for t, rtt in self.probes if start <= t < end)
        return {
            **bs.latency_summary(chosen),
            "messages": len(chosen),
            "healthz_p50_ms": bs.percentile(probes, 0.5) * 1000,
            "healthz_p99_ms": bs.percentile(probes, 0.99) * 1000,
            "healthz_max_ms": (probes[-1] * 1000) if probes else float("nan"),
        }


def compare_phases(busy: dict[str, Any], quiet: dict[str, Any], samples: Samples) -> dict[str, Any]:
    """Both phases over the interval the heavy work took (as far into each phase)."""
    info = busy["info"]
    offset = info["start"] - busy["start"]
    length = min(info["end"], busy["end"]) - info["start"]
    return {
        "heavy": {k: round(v, 2) for k, v in info.items() if k not in ("start", "end")},
        "interval_s": length,
        "truncated": info["end"] > busy["end"],
        "with": samples.figures(info["start"], length),
        "without": samples.figures(quiet["start"] + offset, length),
    }


def run_rounds(
    name: str,
    opts: argparse.Namespace,
    setup: Callable[[bs.Server], Any],
    action_for: Callable[[bs.Server, Any], Callable[[float], Awaitable[dict[str, Any]]]],
) -> dict[str, Any]:
    """Rounds of (with, without) on one server, alternating which goes first.

    All phases are one measured run of the load generator (its receivers count a sender's
    sequence numbers from the start of a run), cut into windows afterwards.
    """
    env = (
        {"PROOFROOM_COMPACT_AFTER_UPDATES": str(opts.compact_after)} if name == "compaction" else {}
    )
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        with bs.running("proofroom", opts) as server:
            specs = asyncio.run(room_specs(server, opts.rooms, opts.per_room))
            pool = bs.WorkerPool(opts.workers)
            try:
                bs.connect_all(pool, specs, opts)
                pool.call("pins", {"t0": time.monotonic() + 0.2, "rate": 200.0, "limit_s": 30.0})
                context = setup(server)
                plan = [
                    (number, kind)
                    for number in range(opts.rounds)
                    for kind in (("with", "without") if number % 2 == 0 else ("without", "with"))
                ]
                times = bs.schedule(opts.warmup, len(plan) * opts.window)
                pool.send("rooms_run", {**times, "drain": opts.drain, "period": 1.0})
                phases, probes = asyncio.run(
                    drive(server, times, plan, opts.window, lambda: action_for(server, context))
                )
                results = pool.receive()
            finally:
                pool.close()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    samples = Samples(results, probes)
    rounds = []
    for number in range(opts.rounds):
        result = compare_phases(phases[(number, "with")], phases[(number, "without")], samples)
        result["order"] = "with first" if number % 2 == 0 else "without first"
        log_round(name, number, result)
        rounds.append(result)
    summary = summarize(rounds)
    summary["events"] = bs.merge_events(results)
    return summary


def log_round(name: str, number: int, result: dict[str, Any]) -> None:
    w, wo = result["with"], result["without"]
    logger.info(
        "%s round %d (%.1fs%s): with p50 %.1f p99 %.1f max %.1f ms, healthz p99 %.1f max %.1f"
        " | without p50 %.1f p99 %.1f max %.1f, healthz p99 %.1f max %.1f  %s",
        name,
        number + 1,
        result["interval_s"],
        ", truncated" if result["truncated"] else "",
        w["p50_ms"],
        w["p99_ms"],
        w["max_ms"],
        w["healthz_p99_ms"],
        w["healthz_max_ms"],
        wo["p50_ms"],
        wo["p99_ms"],
        wo["max_ms"],
        wo["healthz_p99_ms"],
        wo["healthz_max_ms"],
        result["heavy"],
    )


KEYS = ("p50_ms", "p99_ms", "max_ms", "healthz_p50_ms", "healthz_p99_ms", "healthz_max_ms")


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of each figure, with the rounds themselves."""
    median = {
        kind: {key: statistics.median(r[kind][key] for r in rounds) for key in KEYS}
        for kind in ("with", "without")
    }
    return {"median": median, "rounds": rounds}


# ---------------------------------------------------------------------------------------------
# Scenarios


def upload_scenario(opts: argparse.Namespace) -> dict[str, Any]:
    base, version = upload_images(opts.megapixels, Path(opts.cache))
    logger.info("upload images: JPEG %.1f MB, PNG %.1f MB", len(base) / 1e6, len(version) / 1e6)
    return run_rounds(
        "upload",
        opts,
        setup=lambda server: None,
        action_for=lambda server, _: lambda until: upload_flow(server, base, version),
    )


def compaction_scenario(opts: argparse.Namespace) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def setup(server: bs.Server) -> Any:
        async def build() -> None:
            headers = {"Authorization": f"Bearer {server.admin_token}"}
            async with httpx.AsyncClient(
                base_url=server.http, headers=headers, timeout=120, trust_env=False
            ) as http:
                editor, state["session"] = await build_big_document(http, server, opts.big_doc_mib)
                await asyncio.sleep(5)  # the compactions of the build settle
                await editor.close()

        asyncio.run(build())
        return state

    def action_for(server: bs.Server, _: Any) -> Callable[[float], Awaitable[dict[str, Any]]]:
        async def act(until: float) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {server.admin_token}"}
            async with httpx.AsyncClient(
                base_url=server.http, headers=headers, timeout=120, trust_env=False
            ) as http:
                editor = await participant(http, server, state["session"], "editor", 10**6 + 2)
            editor.pin = editor.pins["big-000000"]
            await asyncio.sleep(1.0)  # its join (the whole document sent) is not measured
            try:
                return await edit_steadily(editor, opts.big_rate, until)
            finally:
                await editor.close()

        return act

    return run_rounds("compaction", opts, setup, action_for)


def print_report(results: dict[str, Any]) -> None:
    for name, result in results.items():
        if name == "failed":
            continue
        print(f"\n{name}: medians over {len(result['rounds'])} rounds (ms)")
        print(f"{'':10} {'p50':>7} {'p99':>7} {'max':>7} {'hz p50':>7} {'hz p99':>7} {'hz max':>7}")
        for kind in ("with", "without"):
            row = result["median"][kind]
            print(f"{kind:10} " + " ".join(f"{row[key]:7.1f}" for key in KEYS))
        for number, r in enumerate(result["rounds"], start=1):
            print(
                f"  round {number} ({r['order']}, {r['interval_s']:.1f}s): "
                f"p99 {r['with']['p99_ms']:.1f} vs {r['without']['p99_ms']:.1f}, "
                f"healthz max {r['with']['healthz_max_ms']:.0f} vs "
                f"{r['without']['healthz_max_ms']:.0f}; {r['heavy']}"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    add("--rooms", type=int, default=100)
    add("--per-room", type=int, default=3, help="participants per room")
    add("--rounds", type=int, default=3, help="rounds of (with, without), alternating")
    add("--window", type=float, default=60.0, help="measured seconds per phase")
    add("--warmup", type=float, default=5.0)
    add("--drain", type=float, default=3.0)
    add("--workers", type=int, default=2, help="load-generator processes")
    add("--connect-rate", type=float, default=200.0)
    add("--megapixels", type=float, default=40.0)
    add("--big-doc-mib", type=float, default=24.0)
    add("--big-rate", type=float, default=20.0, help="edits per second of the big document")
    add("--compact-after", type=int, default=100, help="PROOFROOM_COMPACT_AFTER_UPDATES")
    add("--cache", default="/tmp/bench-upload-images", help="where the test images are kept")
    add("--proofroom-cmd", help="command that stands for `proofroom` (another checkout)")
    add("--json", type=Path)
    add("--tmp", default=None, help="where server data dirs go")
    add("--keep-data", action="store_true")
    add("--quiet-wait", type=float, default=30.0, help="wait up to this for an idle machine")
    add("-v", "--verbose", action="store_true")
    opts = parser.parse_args(argv)
    opts.scenarios = [s.strip() for s in opts.scenarios.split(",") if s.strip()]
    if set(opts.scenarios) - set(SCENARIOS):
        parser.error(f"scenarios are {', '.join(SCENARIOS)}")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if opts.verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan = {"upload": upload_scenario, "compaction": compaction_scenario}
    results: dict[str, Any] = {}
    started = time.monotonic()
    for name in opts.scenarios:
        try:
            results[name] = plan[name](opts)
        except Exception as exc:  # one broken scenario should not hide the other's figures
            logger.exception("scenario %s failed", name)
            results.setdefault("failed", {})[name] = repr(exc)
    print_report(results)
    print(f"total {time.monotonic() - started:.0f}s")
    if opts.json:
        payload = {"machine": bs.machine(), "options": vars(opts), "results": results}
        opts.json.write_text(json.dumps(payload, indent=2, default=str))
    return 1 if "failed" in results else 0


if __name__ == "__main__":
    sys.exit(main())
