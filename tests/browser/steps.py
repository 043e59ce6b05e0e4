"""Steps the browser tests share: a test picture, sessions, coordinates, pins, versions."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from proofroom.client import ApiClient

from ..helpers import ReviewSession, RunningServer, join_session

SHOTS = Path(__file__).resolve().parent / "screenshots"


def scene_png(
    width: int = 960, height: int = 640, marks: tuple[tuple[int, int], ...] = ()
) -> bytes:
    """A recognisable test picture: a sky-to-ground gradient, a sun, a house; white squares
    (4 px) centred on ``marks`` so that tests can find exact image points on screen."""
    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    for y in range(height):
        t = y / height
        colour = (
            (int(90 + 80 * t), int(150 + 40 * t), int(230 - 150 * t)) if t < 0.62 else (60, 120, 60)
        )
        draw.line([(0, y), (width, y)], fill=colour)
    draw.ellipse([width * 0.72, height * 0.1, width * 0.86, height * 0.31], fill=(255, 214, 90))
    draw.rectangle([width * 0.2, height * 0.42, width * 0.42, height * 0.75], fill=(170, 70, 50))
    draw.polygon(
        [
            (width * 0.17, height * 0.43),
            (width * 0.31, height * 0.26),
            (width * 0.45, height * 0.43),
        ],
        fill=(110, 40, 40),
    )
    for x, y in marks:
        draw.rectangle([x - 2, y - 2, x + 1, y + 1], fill=(255, 255, 255))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


async def new_review(
    server: RunningServer, *, title: str = "Hero shot, round 2", png: bytes | None = None
) -> ReviewSession:
    """A session from a real picture, with a person (token, user id) per role link."""
    created = await server.admin.create_session(png or scene_png(), title=title)
    return await join_session(server.url, created)


async def shot(page: Any, name: str) -> None:
    """Save a screenshot of the page's current state for people to look at."""
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"))


async def to_page(page: Any, x: float, y: float) -> tuple[float, float]:
    """Where image pixel (x, y) is on the page now (from the stage's view transform)."""
    point = await page.evaluate(
        """([x, y]) => {
          const stage = document.getElementById('stage')
          const [s, tx, ty] = stage.dataset.view.split(',').map(Number)
          const r = stage.getBoundingClientRect()
          return [r.left + tx + x * s, r.top + ty + y * s]
        }""",
        [x, y],
    )
    return point[0], point[1]


async def to_image(page: Any, sx: float, sy: float) -> tuple[float, float]:
    """The image point under page point (sx, sy) now."""
    point = await page.evaluate(
        """([x, y]) => {
          const stage = document.getElementById('stage')
          const [s, tx, ty] = stage.dataset.view.split(',').map(Number)
          const r = stage.getBoundingClientRect()
          return [(x - r.left - tx) / s, (y - r.top - ty) / s]
        }""",
        [sx, sy],
    )
    return point[0], point[1]


async def until(
    condition: Callable[[], Awaitable[Any]], *, timeout: float = 5.0, every: float = 0.05
) -> Any:
    """Re-check ``condition`` every ``every`` seconds until it is true (return its value);
    fail after ``timeout`` seconds. For states the page does not announce in its DOM."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := await condition()):
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)
    return value


async def view_drawn(page: Any) -> None:
    """Wait until the image canvas shows the stage's current view (it redraws on the next
    animation frame after the view changes)."""
    await until(
        lambda: page.evaluate(
            """() => document.getElementById('image-canvas').dataset.view
                === document.getElementById('stage').dataset.view"""
        )
    )


async def canvas_pixel(page: Any, sx: float, sy: float) -> list[int]:
    """The RGBA that the image canvas shows at page point (sx, sy)."""
    pixel: list[int] = await page.evaluate(
        """([x, y]) => {
          const c = document.getElementById('image-canvas')
          const r = c.getBoundingClientRect()
          const k = c.width / r.width
          const data = c.getContext('2d').getImageData((x - r.left) * k, (y - r.top) * k, 1, 1)
          return Array.from(data.data)
        }""",
        [sx, sy],
    )
    return pixel


async def drop_pin(page, x: float, y: float, text: str, *, to: tuple[float, float] | None = None):
    """Drop a pin (or drag a region to ``to``) with the pin tool and type its text."""
    await page.keyboard.press("c")
    sx, sy = await to_page(page, x, y)
    if to is None:
        await page.mouse.click(sx, sy)
    else:
        ex, ey = await to_page(page, *to)
        await page.mouse.move(sx, sy)
        await page.mouse.down()
        await page.mouse.move(ex, ey, steps=6)
        await page.mouse.up()
    await page.locator(".composer textarea").fill(text)


async def make_version(server: RunningServer, session, region: list[int]) -> str:
    """A pin and a finished fix (classical engine) made through the API; its layer id."""
    async with (
        server.client(session.id, session.tokens["editor"]) as editor,
        ApiClient(server.url, session.tokens["editor"]) as api,
    ):
        pin = f"p{region[0]}"
        editor.add_pin(
            pin,
            x=region[0],
            y=region[1],
            text="fix this",
            author=session.users["editor"],
            region=region,
        )
        await editor.flush()
        await editor.wait_for(lambda: pin in editor.pins)
        reply = await api.json(
            "POST", f"/api/sessions/{session.id}/pins/{pin}/fix", json={"prompt": "sky", "seed": 1}
        )
        [job] = reply["jobs"]
        await editor.wait_for(lambda: editor.jobs.get(job, {}).get("status") == "done", timeout=30)
        return str(editor.jobs[job]["layer"])
