"""Zoom precision, offline editing, and a tablet with touch."""

from __future__ import annotations

import contextlib

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
    until,
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
        await page.keyboard.down("Control")  # Ctrl+scroll zooms; a plain scroll pans
        for _ in range(6):
            await page.mouse.wheel(0, -240)
        await page.keyboard.up("Control")
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
    stage = await commenter.locator("#stage").bounding_box()
    view = await commenter.locator("#stage").get_attribute("data-view")
    await commenter.context.set_offline(True)
    await commenter.locator("body[data-conn=offline]").wait_for()
    await commenter.locator(".banner.warn", has_text="offline").wait_for()
    # The banner floats: the canvas keeps its place and its view.
    assert await commenter.locator("#stage").bounding_box() == stage
    assert await commenter.locator("#stage").get_attribute("data-view") == view
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
    # Pins are numbered in the order they were made, the same for everyone: the train's
    # pin came first, so the office's pin became 2, and the editor is told so.
    office = editor.locator("#markers .pin", has_text="2")
    assert "Added in the office" in (await office.get_attribute("aria-label") or "")
    await editor.locator(".toast", has_text="renumbered: 1 → 2").wait_for()
    await office.click()
    await editor.locator(".thread-title .renumbered", has_text="was 1").wait_for()
    await shot(editor, "offline-merged-renumbered")


async def test_a_tablet_with_touch_works(open_page: OpenPage, web_server: RunningServer) -> None:
    session = await new_review(web_server, title="On the tablet")
    async with contextlib.AsyncExitStack() as stack:
        editor = await stack.enter_async_context(
            web_server.client(session.id, session.tokens["editor"])
        )
        editor.add_pin("p1", x=480, y=200, text="Sky too flat", author=session.users["editor"])
        await editor.flush()
        # Four others here: more faces than a tablet's top bar shows.
        await editor.set_awareness({"user": {"name": "Eddie Editor"}})
        for role in ("approver", "owner", "viewer"):
            other = await stack.enter_async_context(
                web_server.client(session.id, session.tokens[role])
            )
            await other.set_awareness({"user": {"name": role}})
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
        # Two faces and "+3": nobody is dropped without a word.
        await tablet.locator("#avatars .avatar.more", has_text="+3").wait_for()
        assert await tablet.locator("#avatars .avatar:not(.more)").count() == 2
        # The zoom buttons are clear of the bottom sheet's tab bar, and work.
        zoom_in = tablet.get_by_role("button", name="Zoom in")
        tabs = await tablet.locator(".tabs").bounding_box()
        button = await zoom_in.bounding_box()
        assert tabs is not None and button is not None
        assert button["y"] + button["height"] <= tabs["y"], (button, tabs)

        async def scale() -> float:
            view = await tablet.locator("#stage").get_attribute("data-view")
            return float(view.split(",")[0])

        fitted = await scale()
        await zoom_in.tap()
        assert await scale() > fitted
        # Tap the pin: the panel slides up with its thread, and a reply can be sent.
        await pin.tap()
        reply = tablet.get_by_label("Reply", exact=True)
        await reply.wait_for()
        await reply.fill("Agreed, add some clouds")
        await tablet.get_by_role("button", name="Reply", exact=True).tap()
        await editor.wait_for(lambda: len(editor.pins["p1"]["thread"]) == 1)
        await shot(tablet, "tablet-thread")
        # Tap empty canvas to close the panel, pick the pin tool, zoom in further.
        sx, sy = await to_page(tablet, 300, 100)  # above the panel
        await tablet.touchscreen.tap(sx, sy)
        await tablet.locator("[data-tool=pin]").tap()
        await zoom_in.tap()
        await zoom_in.tap()
        # Tap low on the right, near the stage's corner: the composer opens beside the
        # point, not over it.
        stage = await tablet.locator("#stage").bounding_box()
        assert stage is not None
        tx, ty = stage["x"] + stage["width"] - 70, stage["y"] + stage["height"] - 70
        ix, iy = await to_image(tablet, tx, ty)
        assert 0 < ix < 960 and 0 < iy < 640
        await tablet.touchscreen.tap(tx, ty)
        composer = tablet.locator(".composer")
        await composer.wait_for()
        cbox = await composer.bounding_box()
        assert cbox is not None
        inside = (
            cbox["x"] <= tx <= cbox["x"] + cbox["width"]
            and cbox["y"] <= ty <= cbox["y"] + cbox["height"]
        )
        assert not inside, (cbox, tx, ty)
        await shot(tablet, "tablet-composer")
        await tablet.locator(".composer textarea").fill("The lawn needs texture")
        await tablet.get_by_role("button", name="Add pin").tap()
        await editor.wait_for(lambda: len(editor.pins) == 2)
        # The new pin's thread opens in the sheet, and the pin stays in sight above it.
        new_pin = tablet.locator('#markers .pin:not([data-pin-id="p1"])')
        await new_pin.wait_for()
        sheet = tablet.locator("#sidebar")

        async def pin_above_sheet() -> bool:
            marker, panel = await new_pin.bounding_box(), await sheet.bounding_box()
            assert marker is not None and panel is not None
            return marker["y"] + marker["height"] <= panel["y"] and marker["y"] >= stage["y"]

        await tablet.locator(".thread-view .pin-text", has_text="lawn").wait_for()
        await until(pin_above_sheet)
        await shot(tablet, "tablet-new-pin")
        # Back to the whole picture, the sheet folded (tap its open tab again).
        await tablet.locator(".zoom-label").tap()
        await tablet.get_by_role("tab", name="Pins").tap()
        await tablet.locator("body:not(.sidebar-open)").wait_for()

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
