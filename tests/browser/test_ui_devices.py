"""Zoom precision, offline editing, and a tablet with touch."""

from __future__ import annotations

import pytest

from ..helpers import RunningServer, eventually
from .conftest import OpenPage
from .steps import (
    canvas_pixel,
    drop_pin,
    new_review,
    scene_png,
    shot,
    to_image,
    to_page,
    view_drawn,
)

pytestmark = pytest.mark.asyncio(loop_scope="package")

MARKS = ((100, 80), (700, 500), (333, 211))


async def marker_tip(page, pin_id: str) -> tuple[float, float]:
    box = await page.locator(f'#markers .pin[data-pin-id="{pin_id}"]').bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"]


async def white_at(page, sx: float, sy: float) -> bool:
    """Whether the canvas shows the white test mark at page point (sx, sy)."""
    return min((await canvas_pixel(page, sx, sy))[:3]) > 240


async def test_zoom_and_pan_keep_pins_on_their_image_points(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Zoom", png=scene_png(marks=MARKS))
    async with web_server.client(session.id, session.tokens["commenter"]) as writer:
        for i, (x, y) in enumerate(MARKS):
            writer.add_pin(f"m{i}", x=x, y=y, text=f"mark {i}", author=session.users["commenter"])
        await writer.flush()
        page = await open_page(session, "viewer")
        await page.locator("#markers .pin").nth(2).wait_for()
        await page.wait_for_selector("body[data-image=drawn]")

        async def check(label: str) -> None:
            await view_drawn(page)  # markers move at once, the image on the next frame
            for i, (x, y) in enumerate(MARKS):
                expected = await to_page(page, x, y)
                if not await page.locator(f'#markers .pin[data-pin-id="m{i}"]').is_visible():
                    continue  # scrolled out of view
                tip = await marker_tip(page, f"m{i}")
                assert abs(tip[0] - expected[0]) <= 1 and abs(tip[1] - expected[1]) <= 1, (label, i)

        await check("fit")
        # Wheel zoom around a point, keyboard zoom, and a drag to pan.
        sx, sy = (round(v) for v in await to_page(page, 333, 211))  # events have whole pixels
        under = await to_image(page, sx, sy)
        await page.mouse.move(sx, sy)
        for _ in range(6):
            await page.mouse.wheel(0, -240)
        await check("wheel")
        # Zooming about a point keeps the image point under the pointer where it was...
        after = await to_page(page, *under)
        assert abs(after[0] - sx) <= 0.5 and abs(after[1] - sy) <= 0.5
        # ... and the image agrees with the pins: the white test mark is drawn at the pin.
        assert await white_at(page, *(await marker_tip(page, "m2")))
        await page.keyboard.press("+")
        await check("keys")
        await page.keyboard.press("h")
        await page.mouse.move(sx, sy)
        await page.mouse.down()
        await page.mouse.move(sx - 150, sy - 90, steps=5)
        await page.mouse.up()
        await check("pan")
        tip = await marker_tip(page, "m2")
        assert await white_at(page, tip[0], tip[1])
        await shot(page, "zoomed-in")
        await page.keyboard.press("0")
        await check("fit again")


async def test_an_offline_edit_merges_on_reconnect(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Offline")
    commenter = await open_page(session, "commenter")
    editor = await open_page(session, "editor")
    await commenter.context.set_offline(True)
    await commenter.locator("body[data-conn=offline]").wait_for()
    await commenter.locator(".banner.warn", has_text="offline").wait_for()
    await drop_pin(commenter, 200, 400, "Added on the train")
    await commenter.keyboard.press("Enter")
    await commenter.locator("#markers .pin").wait_for()
    # Meanwhile the editor adds one too.
    await drop_pin(editor, 600, 400, "Added in the office")
    await editor.keyboard.press("Enter")
    # The editor's pin reaches the server (after the commenter's, had that one been sent).
    stored = web_server.services.rooms.rooms[session.id].pins
    await eventually(lambda: any(p["text"] == "Added in the office" for p in stored.values()))
    assert [p["text"] for p in stored.values()] == ["Added in the office"]
    await editor.locator("#markers .pin").wait_for()
    assert await editor.locator("#markers .pin").count() == 1
    await shot(commenter, "offline")
    await commenter.context.set_offline(False)
    await commenter.locator("body[data-conn=synced]").wait_for()
    for page in (commenter, editor):
        await page.locator("#markers .pin").nth(1).wait_for()
    pins = web_server.services.rooms.rooms[session.id].pins
    assert sorted(p["text"] for p in pins.values()) == ["Added in the office", "Added on the train"]


async def test_a_tablet_with_touch_works(open_page: OpenPage, web_server: RunningServer) -> None:
    session = await new_review(web_server, title="On the tablet")
    async with web_server.client(session.id, session.tokens["editor"]) as editor:
        editor.add_pin("p1", x=480, y=200, text="Sky too flat", author=session.users["editor"])
        await editor.flush()
        tablet = await open_page(
            session,
            "commenter",
            viewport={"width": 820, "height": 1180},
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
        )
        pin = tablet.locator("#markers .pin")
        await pin.wait_for()
        box = await pin.bounding_box()
        assert box is not None and box["width"] >= 34  # a finger-sized target
        # Tap the pin: the panel slides up with its thread, and a reply can be sent.
        await pin.tap()
        reply = tablet.get_by_label("Reply", exact=True)
        await reply.wait_for()
        await reply.fill("Agreed, add some clouds")
        await tablet.get_by_role("button", name="Reply", exact=True).tap()
        await editor.wait_for(lambda: len(editor.pins["p1"]["thread"]) == 1)
        await shot(tablet, "tablet-thread")
        # Tap empty canvas to close the panel, pick the pin tool, tap to drop a pin.
        sx, sy = await to_page(tablet, 300, 100)  # above the panel
        await tablet.touchscreen.tap(sx, sy)
        await tablet.locator("[data-tool=pin]").tap()
        await tablet.touchscreen.tap(sx, sy)
        await tablet.locator(".composer textarea").fill("The lawn needs texture")
        await tablet.get_by_role("button", name="Add pin").tap()
        await editor.wait_for(lambda: len(editor.pins) == 2)
        await tablet.locator("#markers .pin").nth(1).wait_for()
        await shot(tablet, "tablet-new-pin")

        # Pinch out with two fingers (Playwright has no pinch: raw touch events via CDP).
        cx, cy = await to_page(tablet, 480, 150)
        under = await to_image(tablet, round(cx), round(cy))
        scale = float((await tablet.locator("#stage").get_attribute("data-view")).split(",")[0])
        cdp = await tablet.context.new_cdp_session(tablet)

        async def touch(kind: str, spread: float) -> None:
            points = (
                []
                if kind == "touchEnd"
                else [
                    {"x": round(cx - spread), "y": round(cy), "id": 1},
                    {"x": round(cx + spread), "y": round(cy), "id": 2},
                ]
            )
            await cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        await touch("touchStart", 40)
        for spread in range(50, 130, 10):
            await touch("touchMove", spread)
        await touch("touchEnd", 0)
        view = (await tablet.locator("#stage").get_attribute("data-view")).split(",")
        assert float(view[0]) > 2.5 * scale  # 80 px apart became 240 px apart
        after = await to_page(tablet, *under)
        assert abs(after[0] - round(cx)) <= 2 and abs(after[1] - round(cy)) <= 2
        await shot(tablet, "tablet-pinched")
