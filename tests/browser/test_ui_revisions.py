"""Revisions and clips in the browser (issue 13): the switcher, upscale and animate requests,
decisions on a revision, and a clip reviewed frame by frame, on the real server and engines."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from proofroom.client import ApiClient

from ..helpers import RunningServer
from .conftest import OpenPage
from .steps import drop_pin, new_review, shot, to_page

pytestmark = pytest.mark.asyncio(loop_scope="package")

FPS = 24
FRAMES = 48


async def _frame(page: Any) -> int:
    return int(await page.locator("#stage").get_attribute("data-frame"))


async def _current_time(page: Any) -> float:
    t: float = await page.locator("video.clip-video").evaluate("v => v.currentTime")
    return t


async def _clip_session(server: RunningServer) -> tuple[Any, str]:
    """A session with a 2 s, 24 fps clip of its picture (the camera engine, through the API)."""
    session = await new_review(server, title="Clip review")
    async with (
        server.client(session.id, session.tokens["editor"]) as editor,
        ApiClient(server.url, session.tokens["editor"]) as api,
    ):
        queued = await api.json(
            "POST",
            f"/api/sessions/{session.id}/animate",
            json={"seconds": FRAMES / FPS, "fps": FPS, "width": 480, "height": 320},
        )
        clip_id = f"r_{queued['job']}"
        await editor.wait_for(
            lambda: any(e["id"] == clip_id for e in editor.revisions.to_py() or []), timeout=60
        )
    return session, clip_id


async def test_the_switcher_upscale_decide_and_animate_with_two_roles(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Revisions")
    editor = await open_page(session, "editor")
    approver = await open_page(session, "approver")
    # Only the original: no switcher; the approver has no Upscale / Animate actions.
    assert await editor.locator("#revision-strip").is_hidden()
    await approver.get_by_role("tab", name="Revisions").click()
    assert await approver.locator(".open-upscale").count() == 0

    # An open pin on v1, to be carried over.
    await drop_pin(editor, 480, 320, "Sharper roof edge")
    await editor.keyboard.press("Enter")
    await editor.locator("#markers .pin").wait_for()

    # The editor upscales v1 twice over (resample, the default engine, named plainly); the
    # job shows its progress in both roles' panels while it waits for the worker's device.
    await editor.get_by_role("tab", name="Revisions").click()
    assert await editor.locator(".revision-decide").count() == 0  # editors do not decide
    await editor.get_by_role("button", name="Upscale…").click()
    form = editor.locator(".revision-form[data-kind=upscale]")
    await form.get_by_label("Factor").select_option("2")
    assert "Lanczos" in await form.locator(".engine-note").inner_text()
    assert await form.get_by_label("Carry open pins over (scaled)").is_checked()
    worker = web_server.services.worker
    assert worker is not None
    async with worker.device:
        await form.get_by_role("button", name="Upscale").click()
        job = editor.locator(".revision-jobs .job", has_text="Upscale")
        await job.wait_for()
        assert await job.get_attribute("data-status") in ("queued", "running")
        # The approver sees it coming too, without a Cancel.
        seen = approver.locator(".revision-jobs .job", has_text="Upscale")
        await seen.wait_for()
        assert await seen.get_by_role("button", name="Cancel").count() == 0
        await shot(editor, "revisions-upscale-in-progress")
    # Its revision arrives for everyone; the editor's page shows it (it asked for it), with
    # the open pin carried over, scaled to the new size.
    for page in (editor, approver):
        await page.locator(".rev-chip").nth(1).wait_for()
    await editor.locator("#stage[data-revision^=r_]").wait_for()
    await editor.locator("#image-canvas[data-base=full]").wait_for()
    carried = editor.locator("#markers .pin")
    await expect(carried).to_have_count(1)
    assert float(await carried.get_attribute("data-x")) == pytest.approx(960)
    assert float(await carried.get_attribute("data-y")) == pytest.approx(640)
    await expect(editor.locator(".revision-facts dd", has_text="1 carried over")).to_have_count(1)
    chip = approver.locator(".rev-chip").nth(1)
    assert "1920\u00d71280" in await chip.inner_text()
    assert await chip.locator(".badge").get_attribute("data-state") == "pending"

    # The approver switches to v2 and approves the revision as a whole.
    await chip.click()
    await approver.locator(".revision-detail h4", has_text="v2 · Upscale").wait_for()
    await approver.get_by_role("button", name="Approve revision").click()
    for page in (editor, approver):
        await page.locator(".rev-chip").nth(1).locator(".badge[data-state=approved]").wait_for()
    await approver.locator(".revision-detail .decisions li", has_text="Approved").wait_for()
    await shot(approver, "revisions-switcher-approver")

    # The editor animates the approved upscale: a clip, v3, shown on the stage as a video.
    await editor.get_by_role("button", name="Animate…").click()
    anim = editor.locator(".revision-form[data-kind=animate]")
    assert "From v2" in await anim.locator(".source-line").inner_text()
    await anim.get_by_label("Seconds").fill("1")
    await anim.get_by_label("Frames per second").fill("12")
    await anim.get_by_role("button", name="Make clip").click()
    await editor.locator(".rev-chip").nth(2).wait_for(timeout=30_000)
    await editor.locator("video.clip-video:not([hidden])[data-state=paused]").wait_for()
    assert "Clip" in await editor.locator(".rev-chip").nth(2).inner_text()
    assert await editor.locator("#clip-bar").is_visible()
    # Back on v1: the picture again, no clip bar.
    await editor.locator(".rev-chip").first.click()
    await editor.locator("#stage[data-revision=v1][data-media=image]").wait_for()
    assert await editor.locator("#clip-bar").is_hidden()
    await shot(editor, "revisions-switcher-editor")


async def test_a_clip_plays_to_its_end_and_steps_frame_by_frame(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session, clip_id = await _clip_session(web_server)
    page = await open_page(session, "commenter")
    await page.locator(f".rev-chip[data-revision-id={clip_id}]").click()
    video = page.locator("video.clip-video[data-state=paused]")
    await video.wait_for()
    # Debian's Chromium plays no H.264: the WebM rendition is the one loaded.
    plays_h264 = await video.evaluate("""v => v.canPlayType('video/mp4; codecs="avc1.42E01E"')""")
    assert await video.get_attribute("data-rendition") == ("mp4" if plays_h264 else "webm")
    # Stepping: one frame is 1/fps of a second, forward and back (buttons and , / . keys).
    await page.locator("#clip-bar").get_by_role("button", name="Next frame").click()
    await page.locator("#stage[data-frame='1']").wait_for()
    t1 = await _current_time(page)
    await page.keyboard.press(".")
    await page.locator("#stage[data-frame='2']").wait_for()
    t2 = await _current_time(page)
    assert t2 - t1 == pytest.approx(1 / FPS, abs=1e-6)
    await page.keyboard.press(",")
    await page.locator("#stage[data-frame='1']").wait_for()
    assert await _current_time(page) == pytest.approx(t1, abs=1e-6)
    # It plays to the end.
    await page.locator("#clip-bar").get_by_role("button", name="Play").click()
    await page.locator("video.clip-video[data-state=ended]").wait_for(timeout=15_000)
    assert await page.locator("video.clip-video").evaluate("v => v.ended")
    assert await _frame(page) == FRAMES - 1


async def test_a_pin_on_frame_30_shows_on_that_frame_only_in_both_browsers(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session, clip_id = await _clip_session(web_server)
    author = await open_page(session, "commenter")
    other = await open_page(session, "viewer")
    for page in (author, other):
        await page.locator(f".rev-chip[data-revision-id={clip_id}]").click()
        await page.locator("video.clip-video[data-state=paused]").wait_for()
    for _ in range(30):
        await author.keyboard.press(".")
    await author.locator("#stage[data-frame='30']").wait_for()
    await author.keyboard.press("c")
    sx, sy = await to_page(author, 300, 120)
    await author.mouse.click(sx, sy)
    await author.locator(".composer textarea").fill("The roof flickers here")
    await author.keyboard.press("Enter")
    # The pin is on the clip, at frame 30, and shows there.
    marker = author.locator("#markers .pin")
    await marker.wait_for()
    pin_id = await marker.get_attribute("data-pin-id")
    room = web_server.services.rooms.rooms[session.id]
    pin = room.pins[pin_id]
    assert pin["revision"] == clip_id and int(pin["frame"]) == 30
    assert await author.locator(f".timeline-pin[data-pin-id={pin_id}][data-frame='30']").count()
    await shot(author, "clip-frame-30-with-pin")
    # On frame 31 it is gone; back on 30 it is there again.
    await author.keyboard.press(".")
    await author.locator("#stage[data-frame='31']").wait_for()
    await expect(author.locator("#markers .pin")).to_have_count(0)
    await author.keyboard.press(",")
    await author.locator("#markers .pin").wait_for()
    # Its author makes it cover frames 30 to 33: it shows on 33, not on 34.
    for _ in range(3):
        await author.keyboard.press(".")
    await author.locator("#stage[data-frame='33']").wait_for()
    await author.get_by_role("button", name="Cover to the frame shown").click()
    await author.locator(f".timeline-pin.range[data-pin-id={pin_id}]").wait_for()
    await author.locator("#markers .pin").wait_for()
    assert room.pins[pin_id]["frames"] == [30, 33]
    await author.keyboard.press(".")
    await author.locator("#stage[data-frame='34']").wait_for()
    await expect(author.locator("#markers .pin")).to_have_count(0)

    # The other browser: the timeline marks frame 30; the marker shows only on frame 30.
    tick = other.locator(f".timeline-pin[data-pin-id={pin_id}]")
    await tick.wait_for()
    assert await other.locator("#stage").get_attribute("data-frame") == "0"
    await expect(other.locator("#markers .pin")).to_have_count(0)
    # Clicking the pin in the list jumps to its frame.
    await other.get_by_role("tab", name="Pins").click()
    await other.locator(f".pin-row[data-pin-id={pin_id}]").click()
    await other.locator("#stage[data-frame='30']").wait_for()
    await other.locator(f"#markers .pin[data-pin-id={pin_id}]").wait_for()
    await shot(other, "clip-timeline-other-browser")
    # On v1 (the original) the clip's pin does not show.
    await other.locator(".rev-chip[data-revision-id=v1]").click()
    await other.locator("#stage[data-revision=v1]").wait_for()
    await expect(other.locator("#markers .pin")).to_have_count(0)


async def test_a_clip_first_frame_compares_with_its_source_still(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session, clip_id = await _clip_session(web_server)
    page = await open_page(session, "viewer")
    await page.locator(f".rev-chip[data-revision-id={clip_id}]").click()
    await page.locator("video.clip-video[data-state=paused]").wait_for()
    await page.keyboard.press("s")
    await page.locator("#compare-ui[data-mode=slider]").wait_for()
    # The canvas shows the comparison (the video steps aside): source left, first frame right.
    assert await page.locator("video.clip-video").is_hidden()
    await page.locator("#image-canvas[data-base=full]").wait_for()
    await shot(page, "clip-compare-source")
    await page.keyboard.press("Escape")
    await page.locator("video.clip-video:not([hidden])").wait_for()
