"""Meeting replay on the producer's dashboard: scrub through a session, download its log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.async_api import expect

from proofroom.client import ApiClient

from ..helpers import ADMIN_TOKEN, RunningServer, png_bytes
from ..review_steps import decide
from .conftest import OpenPage
from .steps import new_review, shot

pytestmark = pytest.mark.asyncio(loop_scope="package")


async def test_a_producer_scrubs_through_a_meeting_and_downloads_its_log(
    open_page: OpenPage, web_server: RunningServer, tmp_path: Path
) -> None:
    session = await new_review(web_server, title="Replay me")
    sid = session.id
    async with (
        web_server.client(sid, session.tokens["commenter"]) as commenter,
        web_server.client(sid, session.tokens["editor"]) as editor,
        ApiClient(web_server.url, session.tokens["editor"]) as edit,
        ApiClient(web_server.url, session.tokens["approver"]) as approve,
    ):
        commenter.add_pin(
            "p1", x=300, y=200, text="the sky is too dull", author=session.users["commenter"]
        )
        await commenter.flush()
        await editor.wait_for(lambda: "p1" in editor.pins)
        editor.reply("p1", "c1", text="on it, bluer", author=session.users["editor"])
        await editor.flush()
        await commenter.wait_for(lambda: len(commenter.pins["p1"]["thread"]) == 1)
        reply = await edit.json(
            "POST",
            f"/api/sessions/{sid}/pins/p1/versions",
            files={"image": ("v.png", png_bytes(960, 640, (40, 90, 220)))},
        )
        version = reply["layer"]
        await decide(approve, sid, version, "request_changes", "less saturated")
        commenter.add_pin(
            "p2", x=700, y=420, text="crop the lawn", author=session.users["commenter"]
        )
        await commenter.flush()
        await editor.wait_for(lambda: "p2" in editor.pins)

    page = await open_page(None, "admin", path=f"/?token={ADMIN_TOKEN}")
    row = page.locator("table.sessions tbody tr", has_text="Replay me")
    await row.get_by_role("button", name="Replay").click()
    box = page.locator(".replay-box")
    events = box.locator(".replay-events li")
    await expect(events).to_have_count(7)
    kinds = [await li.get_attribute("data-kind") for li in await events.all()]
    assert kinds == [
        "session.created",
        "pin.created",
        "reply.created",
        "version.created",
        "version.decision",
        "version.state",
        "pin.created",
    ]
    # At the end: both pins, the reply, the version with its decision.
    await expect(box.locator(".replay-pin")).to_have_count(2)
    await expect(box.locator(".replay-thread").first).to_contain_text("on it, bluer")
    await expect(box.locator(".replay-versions").first).to_contain_text("v1: changes requested")
    await expect(box.locator(".replay-versions").first).to_contain_text("Abby Approver")
    await expect(box.locator(".replay-image")).to_have_js_property("complete", True)
    await shot(page, "replay-end")

    # Back to just after the first pin: one pin, no reply, no version yet.
    scrub = box.get_by_label("Replay position")
    await scrub.fill("1")
    await expect(box).to_have_attribute("data-position", "1")
    await expect(box.locator(".replay-pin")).to_have_count(1)
    await expect(box.locator(".replay-thread")).to_have_count(1)
    await expect(box.locator(".replay-thread")).not_to_contain_text("on it")
    await expect(box.locator(".replay-versions")).to_have_count(0)
    await expect(box.locator(".replay-caption")).to_contain_text("Cal Commenter added pin 1")
    # The keyboard steps too; and a click on an event jumps to it.
    await box.get_by_role("button", name="Next event").click()
    await expect(box.locator(".replay-thread")).to_contain_text("on it, bluer")
    await events.nth(4).get_by_role("button").click()
    await expect(box).to_have_attribute("data-position", "4")
    await expect(box.locator(".replay-versions")).to_contain_text("Abby Approver asked for changes")
    await expect(events.nth(4)).to_have_class("current")
    await shot(page, "replay-midway")

    async with page.expect_download() as download_info:
        await box.get_by_role("button", name="Download event log").click()
    download = await download_info.value
    assert download.suggested_filename == f"proofroom-{sid}-events.json"
    saved = tmp_path / "events.json"
    await download.save_as(saved)
    log = json.loads(saved.read_text())
    assert [e["kind"] for e in log["events"]] == kinds
    assert log["events"][2]["actor"] == "Eddie Editor"
    assert log["events"][4]["note"] == "less saturated"


async def test_an_owner_replays_the_session_in_the_room(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Room replay")
    owner = await open_page(session, "owner")
    approver = await open_page(session, "approver")
    await expect(approver.get_by_role("button", name="Replay", exact=True)).to_be_hidden()
    async with web_server.client(session.id, session.tokens["commenter"]) as commenter:
        commenter.add_pin("p1", x=480, y=320, text="warmer", author=session.users["commenter"])
        await commenter.flush()
    await owner.locator("#markers .pin").first.wait_for()
    await owner.get_by_role("button", name="Replay", exact=True).click()
    dialog = owner.get_by_role("dialog", name="Meeting replay")
    await expect(dialog.locator(".replay-events li")).to_have_count(2)
    await expect(dialog.locator(".replay-pin")).to_have_count(1)
    await expect(dialog.locator(".replay-caption")).to_contain_text("Cal Commenter added pin 1")
    await shot(owner, "replay-in-room")
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_be_hidden()
