"""Owners (invites, locks, export), lost access, and the producer's dashboard."""

from __future__ import annotations

import pytest

from ..helpers import ADMIN_TOKEN, RunningServer
from .conftest import OpenPage
from .steps import make_version, new_review, shot, to_page

pytestmark = pytest.mark.asyncio(loop_scope="package")


async def test_an_owner_invites_locks_and_exports(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Owner tools")
    owner = await open_page(session, "owner")
    editor = await open_page(session, "editor")
    await owner.get_by_role("tab", name="Share").click()
    await owner.get_by_label("Role").select_option("approver")
    await owner.get_by_label("Invitee name").fill("Ana (client)")
    await owner.get_by_role("button", name="Create invite link").click()
    link = await owner.get_by_label("Invite link").input_value()
    assert f"/s/{session.id}?token=" in link
    await owner.locator(".invites li", has_text="Ana (client)").wait_for()

    # Lock the house: everyone sees the lock.
    await owner.keyboard.press("l")
    x0, y0 = await to_page(owner, 190, 260)
    x1, y1 = await to_page(owner, 410, 490)
    await owner.mouse.move(x0, y0)
    await owner.mouse.down()
    await owner.mouse.move(x1, y1, steps=5)
    await owner.mouse.up()
    await owner.locator(".locks li").wait_for()
    locks = web_server.services.rooms.rooms[session.id].meta["locks"]
    assert [list(lock) for lock in locks] == [[190, 260, 220, 230]]
    await shot(owner, "owner-share-and-lock")
    await editor.wait_for_selector("body[data-conn=synced]")

    # Export downloads the flattened PNG.
    async with owner.expect_download() as download_info:
        await owner.get_by_role("button", name="Export approved PNG").click()
    download = await download_info.value
    assert download.suggested_filename == "Owner tools.png"

    # The new invite works in a browser, with its name and role.
    invited = await open_page(None, "approver", path="/" + link.split("/", 3)[3])
    await invited.wait_for_selector("body[data-state=ready]")
    assert await invited.locator("#role-badge").text_content() == "approver"


async def test_a_revoked_link_stops_reconnecting_and_says_why(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Revoked")
    async with web_server.api(session.tokens["owner"]) as owner:
        made = await owner.json(
            "POST", f"/api/sessions/{session.id}/invites", json={"role": "commenter", "name": "Bo"}
        )
        page = await open_page(None, "commenter", path=f"/s/{session.id}?token={made['token']}")
        await page.wait_for_selector("body[data-state=ready]")
        # Fake timers from here, to run the reconnect delays through at once; and new sockets
        # as the page reports them (before its reply to a later command on the same session).
        await page.clock.install()
        cdp = await page.context.new_cdp_session(page)
        sockets: list[str] = []
        cdp.on("Network.webSocketCreated", lambda event: sockets.append(event["url"]))
        await cdp.send("Network.enable")
        await owner.request("DELETE", f"/api/sessions/{session.id}/invites/{made['id']}")
    await page.locator("body[data-conn=closed]").wait_for()
    await page.locator(".banner.error", has_text="revoked").wait_for()
    await page.clock.run_for(30_000)  # every timer due in 30 s: all reconnect delays (≤ 5 s)
    await cdp.send("Runtime.evaluate", {"expression": "0"})
    assert sockets == []
    await shot(page, "revoked")
    # An unknown token never gets as far as the room.
    bad = await open_page(
        None, "nobody", path=f"/s/{session.id}?token=pr_not_a_token", refused=True
    )
    await bad.locator("#fatal", has_text="not valid").wait_for()


async def test_the_producer_dashboard_sorts_and_filters(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    zebra = await new_review(web_server, title="Zebra campaign")
    await new_review(web_server, title="Alpha launch")
    layer = await make_version(web_server, zebra, [40, 40, 100, 80])
    async with web_server.api(zebra.tokens["approver"]) as approver:
        await approver.json(
            "POST",
            f"/api/sessions/{zebra.id}/layers/{layer}/decision",
            json={"decision": "approve", "note": ""},
        )
    page = await open_page(None, "admin", path=f"/?token={ADMIN_TOKEN}")
    table = page.locator("table.sessions tbody")
    await table.locator("tr", has_text="Alpha launch").wait_for()
    await page.locator("[data-sort=title]").click()
    titles = await table.locator("td:first-child").all_text_contents()
    assert titles == sorted(titles, key=str.lower)
    await page.locator("[data-sort=title]").click()
    titles = await table.locator("td:first-child").all_text_contents()
    assert titles == sorted(titles, key=str.lower, reverse=True)
    await page.get_by_label("Filter by title").fill("zebra")
    assert await table.locator("tr").all_text_contents() == [
        t for t in await table.locator("tr").all_text_contents() if "Zebra" in t
    ]
    assert await table.locator("tr").count() == 1
    await page.get_by_label("Filter by title").fill("")
    await page.locator("svg.chart rect.bar[data-count='1']").wait_for()
    zebra_row = table.locator("tr", has_text="Zebra campaign")
    assert await zebra_row.locator("td").nth(2).text_content() == "1"  # one approved version
    await shot(page, "producer-dashboard")
    # Each title opens its review room.
    href = await table.locator("a", has_text="Zebra campaign").get_attribute("href")
    assert href is not None and href.startswith("/s/")
