"""Fixes, versions and decisions in the browser: progress and results reach everyone."""

from __future__ import annotations

import re

import pytest

from ..helpers import RunningServer
from .conftest import OpenPage
from .steps import canvas_pixel, drop_pin, make_version, new_review, shot, to_page

pytestmark = pytest.mark.asyncio(loop_scope="package")


async def test_a_fix_shows_its_progress_and_result_in_both_browsers(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Fix in the meeting")
    editor = await open_page(session, "editor")
    viewer = await open_page(session, "viewer")
    await viewer.get_by_role("tab", name="Versions").click()

    # The editor drags a region pin around the sun and turns it into a fix.
    await drop_pin(editor, 680, 60, "Remove the sun", to=(840, 210))
    await editor.keyboard.press("Enter")
    await editor.get_by_role("button", name="Fix this pin…").click()
    # (The server's engine here ignores the prompt, so the form shows none: the drafted
    # prompt and the engine picker are tests/browser/test_ui_fix_form.py's.)
    await editor.get_by_label("Seed", exact=True).fill("42")
    await editor.get_by_label("Variants").fill("2")
    worker = web_server.services.worker
    assert worker is not None
    # Hold the worker's device so that everyone sees both jobs in flight (the first may
    # already be claimed: running, waiting for the device), with their queue positions.
    async with worker.device:
        await editor.locator(".send-fix").click()
        active = ".jobs .job[data-status=queued], .jobs .job[data-status=running]"
        await viewer.locator(active).nth(1).wait_for()
        await viewer.locator(".jobs .job[data-status=queued]", has_text="in queue").first.wait_for()
        assert await viewer.locator(".jobs button", has_text="Cancel").count() == 0
        await shot(viewer, "fix-queued-viewer")
        await shot(editor, "fix-queued-editor")
        # The editor cancels the variant last in the queue; everyone sees it go.
        queued = editor.locator("#panel-fix .job[data-status=queued]")
        last = queued.filter(has_text="#2 in queue")
        if await last.count() == 0:
            last = queued.filter(has_text="#1 in queue")
        await last.get_by_role("button", name="Cancel").click()
        await viewer.locator(".jobs .job[data-status=cancelled]").wait_for()
    # The other variant runs and arrives as a pending version, in both browsers.
    await editor.locator("#panel-fix .job[data-status=done]").wait_for(timeout=20_000)
    await editor.get_by_role("tab", name="Versions").click()
    for page in (editor, viewer):
        await page.locator(".layer-list .badge[data-state=pending]").wait_for()
        assert await page.locator(".layer-list .layer-row").count() == 1
    await viewer.locator(".layer-row").first.click()
    await viewer.locator(".layer-detail dd", has_text=re.compile(r"^4[23]$")).wait_for()
    await shot(viewer, "fix-result-viewer")


async def test_an_editor_paints_a_mask_and_sends_it(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Painted mask")
    editor = await open_page(session, "editor")
    await drop_pin(editor, 300, 200, "The roof edge is jagged")
    await editor.keyboard.press("Enter")
    await editor.keyboard.press("b")
    await editor.locator("#panel-fix .mask-info", has_text="Paint").wait_for()
    path = [(250, 230), (300, 190), (350, 230)]
    await editor.mouse.move(*(await to_page(editor, *path[0])))
    await editor.mouse.down()
    for point in path[1:]:
        await editor.mouse.move(*(await to_page(editor, *point)), steps=8)
    await editor.mouse.up()
    await editor.locator("#panel-fix .mask-info", has_text="Painted mask").wait_for()
    await shot(editor, "mask-painted")
    await editor.locator(".send-fix").click()
    await editor.locator("#panel-fix .job[data-status=done]").wait_for(timeout=20_000)
    layer = web_server.services.rooms.rooms[session.id].layers[0]
    x, y, w, h = (int(v) for v in layer["box"])
    # The patch covers the painted stroke (brush radius included), not the whole image.
    assert x <= 250 and y <= 190 and x + w >= 350 and y + h >= 230
    assert w < 200 and h < 120


async def test_an_approval_changes_both_browsers_and_compare_modes_work(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Decisions")
    layer = await make_version(web_server, session, [660, 50, 200, 170])
    approver = await open_page(session, "approver")
    editor = await open_page(session, "editor")
    for page in (approver, editor):
        await page.get_by_role("tab", name="Versions").click()
    row = approver.locator(f".layer-row[data-layer-id={layer}]")
    await row.click()

    # Compare the version with its parent, in each mode.
    for mode, key in (("slider", "s"), ("toggle", "t"), ("diff", "d")):
        await approver.keyboard.press(key)
        await approver.locator(f"#compare-ui[data-mode={mode}]").wait_for()
    await approver.locator(".compare-bar", has_text="px changed").wait_for()
    await shot(approver, "compare-difference")
    await approver.locator("[data-compare=side]").click()
    await shot(approver, "compare-side-by-side")
    await approver.locator("[data-compare=slider]").click()
    await shot(approver, "compare-slider")
    await approver.keyboard.press("Escape")
    await approver.locator("#compare-ui").wait_for(state="hidden")

    # A request for changes needs a note; then an approval replaces it, for everyone.
    await approver.locator("[data-decision=request_changes]").click()
    await approver.locator(".toast", has_text="Say what should change").wait_for()
    await approver.get_by_label("Decision note").fill("Keep a few clouds")
    await approver.locator("[data-decision=request_changes]").click()
    editor_badge = editor.locator(f".layer-row[data-layer-id={layer}] .badge")
    await editor.locator(
        f".layer-row[data-layer-id={layer}] .badge[data-state=changes_requested]"
    ).wait_for()
    await approver.locator("[data-decision=approve]").click()
    await approver.locator(
        f".layer-row[data-layer-id={layer}] .badge[data-state=approved]"
    ).wait_for()
    await editor.locator(
        f".layer-row[data-layer-id={layer}] .badge[data-state=approved]"
    ).wait_for()
    assert await editor_badge.text_content() == "Approved"
    # Editors do not decide.
    await editor.locator(f".layer-row[data-layer-id={layer}]").click()
    assert await editor.locator("[data-decision]").count() == 0
    await shot(approver, "decision-approved")


async def test_a_fix_visibly_changes_the_canvas_once_selected(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Sun removed")
    layer = await make_version(web_server, session, [660, 50, 200, 170])
    page = await open_page(session, "viewer")
    await page.wait_for_selector("body[data-image=drawn]")
    # A pending version is not the picture: the canvas shows the original until it is chosen.
    await page.locator("#canvas-caption", has_text="1 version waiting for review").wait_for()
    await page.wait_for_selector("#image-canvas[data-patches='0']")
    await page.get_by_role("tab", name="Versions").click()
    await page.locator(f".layer-row[data-layer-id={layer}]").click()
    await page.wait_for_selector("#image-canvas[data-patches='1']")  # it comes after the base
    await page.locator("#canvas-caption", has_text="Showing v1 over the original image").wait_for()
    pixel = await canvas_pixel(page, *(await to_page(page, 760, 130)))
    assert pixel[0] < 200, pixel  # the sun's yellow (255, 214, 90) is painted over
