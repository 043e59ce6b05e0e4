#!/usr/bin/env python3
"""Browser client benchmark: bundle size, time to interactive, pin latency between browsers.

    .venv/bin/python scripts/bench_web.py            # ~1 minute
    .venv/bin/python scripts/bench_web.py --runs 3 --pins 200

Needs the built bundle (scripts/build_web.py), Playwright (pip) and Debian's chromium.
It starts ``proofroom serve`` on a free loopback port with a fresh data dir, creates a
session from a 4096x4096 picture, writes ``--pins`` pins (a third with a region, each with
a reply) through the Python client, and then measures in real Chromium:

- the bundle's size, raw and gzipped (what a first visit downloads);
- time to interactive: navigation start to the room synced with every pin's marker placed
  and input live (the ``proofroom-interactive`` mark), and to the image drawn
  (``proofroom-image``), each in a fresh browser context (cold cache), median of ``--runs``;
- pin latency: a pin typed in one browser (Enter) until its marker exists in another one
  open on the same session, both on this machine's clock, over ``--samples`` pins.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proofroom.client import ApiClient, SessionClient  # noqa: E402
from proofroom.client.api import join  # noqa: E402

DIST = ROOT / "proofroom" / "client" / "web" / "dist"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ADMIN = "pr_admin_bench_web"
READY = re.compile(r"Proofroom is running at (http://127\.0\.0\.1:\d+)/")


def bundle_sizes() -> list[tuple[str, int, int]]:
    out = []
    for name in ("review.js", "styles.css", "producer.js"):
        data = (DIST / name).read_bytes()
        out.append((name, len(data), len(gzip.compress(data, 9))))
    return out


def picture(side: int) -> bytes:
    """A smooth photo-like picture (gradients, a disc, mild noise), as PNG."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    rng = np.random.default_rng(1)
    rgb = np.stack([90 + 120 * y, 140 + 60 * x, 220 - 140 * y], axis=-1)
    disc = (x - 0.75) ** 2 + (y - 0.2) ** 2 < 0.01
    rgb[disc] = (255, 214, 90)
    rgb += rng.normal(0, 2.0, rgb.shape).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def start_server(data: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROOFROOM_")}
    env |= {"PROOFROOM_ADMIN_TOKEN": ADMIN, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "proofroom", "serve", "--port", "0", "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = READY.search(line)
        if match:
            return proc, match[1]
    raise RuntimeError("the server did not start")


async def prepare(url: str, side: int, pins: int) -> tuple[str, dict[str, str], int]:
    png = picture(side)
    async with ApiClient(url, ADMIN) as admin:
        created = await admin.create_session(png, title=f"{side}px, {pins} pins")
    # A role link is a door: one bench participant joins each role's link under a name.
    tokens = {
        role: (await join(link, f"Bench {role}")).token for role, link in created["links"].items()
    }
    async with ApiClient(url, tokens["editor"]) as api:
        author = (await api.whoami())["user_id"]
    rng = np.random.default_rng(2)
    async with SessionClient(url, created["id"], tokens["editor"]) as client:
        for start in range(0, pins, 25):
            # 25 pins per update: the server limits updates per second, not their size.
            with client.doc.transaction():
                for i in range(start, min(start + 25, pins)):
                    x, y = (float(v) for v in rng.integers(20, side - 220, 2))
                    region = [x, y, 200.0, 150.0] if i % 3 == 0 else None
                    text = f"Pin {i}: the edge looks soft here"
                    client.add_pin(f"p{i}", x=x, y=y, text=text, author=author, region=region)
                    client.reply(f"p{i}", f"c{i}", text="Agreed, sharpen it", author=author)
            await client.flush()
        await client.wait_for(lambda: len(client.pins) == pins)
    return created["id"], tokens, len(png)


async def marks(page: Any) -> dict[str, float]:
    # (Selectors, not wait_for_function: the page's CSP forbids the eval that needs.)
    await page.wait_for_selector("body[data-image=drawn]", timeout=60_000)
    found: dict[str, float] = await page.evaluate(
        """() => Object.fromEntries(['proofroom-interactive', 'proofroom-image']
             .map((n) => [n, performance.getEntriesByName(n)[0].startTime]))"""
    )
    return found


async def measure(
    url: str, session: str, tokens: dict[str, str], side: int, runs: int, samples: int
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    page_url = f"{url}/s/{session}?token={tokens['commenter']}"
    results: dict[str, Any] = {"interactive": [], "image": [], "latency": []}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for _ in range(runs):
            context = await browser.new_context(viewport={"width": 1440, "height": 900})
            page = await context.new_page()
            await page.goto(page_url)
            found = await marks(page)
            results["interactive"].append(found["proofroom-interactive"])
            results["image"].append(found["proofroom-image"])
            await context.close()
        # Pin latency, between two browsers on the loaded session.
        pages = []
        for role in ("commenter", "editor"):
            context = await browser.new_context(viewport={"width": 1440, "height": 900})
            page = await context.new_page()
            await page.goto(f"{url}/s/{session}?token={tokens[role]}")
            await page.wait_for_selector("body[data-state=ready]", timeout=60_000)
            pages.append(page)
        writer, reader = pages
        await reader.evaluate(
            """() => {
              window.__seen = {}
              new MutationObserver((records) => {
                const t = performance.timeOrigin + performance.now()
                for (const r of records) for (const n of r.addedNodes) {
                  const id = n.dataset && n.dataset.pinId
                  if (id && !(id in window.__seen)) window.__seen[id] = t
                }
              }).observe(document.getElementById('markers'), {childList: true})
            }"""
        )
        await writer.keyboard.press("c")
        for i in range(samples):
            # Below every existing pin's point (markers stand above their point), apart.
            x, y = 100 + 150 * i, side - 60
            sx, sy = await writer.evaluate(
                """([x, y]) => {
                  const stage = document.getElementById('stage')
                  const [s, tx, ty] = stage.dataset.view.split(',').map(Number)
                  const r = stage.getBoundingClientRect()
                  return [r.left + tx + x * s, r.top + ty + y * s]
                }""",
                [x, y],
            )
            await writer.mouse.click(sx, sy)
            await writer.locator(".composer textarea").fill(f"latency sample {i}")
            await writer.evaluate(
                """() => window.addEventListener('keydown', (e) => {
                  if (e.key !== 'Enter') return
                  window.__sentAt = performance.timeOrigin + performance.now()
                }, {capture: true, once: true})"""
            )
            before = await reader.evaluate("Object.keys(window.__seen).length")
            await writer.keyboard.press("Enter")
            await reader.evaluate(
                """(before) => new Promise((resolve) => {
                  const check = () => Object.keys(window.__seen).length > before
                    ? resolve() : requestAnimationFrame(check)
                  check()
                })""",
                before,
            )
            seen_at = await reader.evaluate("Math.max(...Object.values(window.__seen))")
            results["latency"].append(seen_at - await writer.evaluate("window.__sentAt"))
            await writer.keyboard.press("Escape")  # deselect, so the next click drops a pin
        await browser.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--pins", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20, help="pins to time (at most 25)")
    args = parser.parse_args()
    # The samples go in one row below every other pin, where each one's marker is clear
    # of the others: 25 fit across a 4096 px image at the page's fitted zoom.
    args.samples = min(args.samples, 25)
    if not (DIST / "review.js").exists():
        print("build the bundle first: scripts/build_web.py", file=sys.stderr)
        return 1
    print("| file | raw KiB | gzipped KiB |\n|---|---|---|")
    for name, raw, packed in bundle_sizes():
        print(f"| {name} | {raw / 1024:.1f} | {packed / 1024:.1f} |")
    review_total = sum(p for n, _, p in bundle_sizes() if n != "producer.js")
    print(f"\nreview page download (js + css, gzipped): {review_total / 1024:.1f} KiB\n")
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp) / "data")
        try:
            started = time.perf_counter()
            session, tokens, png_bytes = asyncio.run(prepare(url, args.side, args.pins))
            print(
                f"session: {args.side}x{args.side} PNG of {png_bytes / 2**20:.1f} MiB, "
                f"{args.pins} pins with replies (written in {time.perf_counter() - started:.1f} s)"
            )
            found = asyncio.run(measure(url, session, tokens, args.side, args.runs, args.samples))
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    med = statistics.median
    lat = sorted(found["latency"])
    print(
        f"time to interactive: median {med(found['interactive']):.0f} ms "
        f"(runs: {', '.join(f'{v:.0f}' for v in found['interactive'])})"
    )
    print(
        f"image drawn:         median {med(found['image']):.0f} ms "
        f"(runs: {', '.join(f'{v:.0f}' for v in found['image'])})"
    )
    p95 = lat[int(0.95 * (len(lat) - 1))]
    print(
        f"pin latency browser -> browser: median {med(lat):.1f} ms, "
        f"p95 {p95:.1f} ms, max {lat[-1]:.1f} ms over {len(lat)} pins"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
