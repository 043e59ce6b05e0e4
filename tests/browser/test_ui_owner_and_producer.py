"""Owners (invites, locks, export), lost access, and the producer's dashboard."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.async_api import expect

from proofroom.server.review.events import Event

from ..helpers import ADMIN_TOKEN, RunningServer
from .conftest import OpenPage
from .steps import make_version, new_review, scene_png, shot, to_page

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
    # Each title opens its review room, with no token in the link (nor in the address bar).
    href = await table.locator("a", has_text="Zebra campaign").get_attribute("href")
    assert href == f"/s/{zebra.id}"
    assert ADMIN_TOKEN not in page.url
    await table.locator("a", has_text="Zebra campaign").click()
    await page.wait_for_selector("body[data-state=ready]")
    assert await page.locator("#role-badge").text_content() == "owner"
    assert ADMIN_TOKEN not in page.url


async def test_the_dashboard_is_live(open_page: OpenPage, web_server: RunningServer) -> None:
    """A decision, a new version and a new session show without Refresh (the event stream,
    opened with a one-time ticket: the admin token is in no URL the page requests)."""
    session = await new_review(web_server, title="Live campaign")
    layer = await make_version(web_server, session, [40, 40, 100, 80])
    page = await open_page(None, "admin", path="/")  # no token: it asks for the link
    # Every request the dashboard makes, but the printed link itself (the navigation).
    urls: list[str] = []
    page.on(
        "request",
        lambda request: None if request.is_navigation_request() else urls.append(request.url),
    )
    await page.goto(f"{web_server.url}/?token={ADMIN_TOKEN}")
    await page.locator("body[data-live=on]").wait_for()
    row = page.locator("table.sessions tbody tr", has_text="Live campaign")
    cells = row.locator("td")
    assert await cells.nth(1).text_content() == "1"  # one pending version
    assert await cells.nth(2).text_content() == "0"
    # When the page shows the approval, by the page's own clock (the same wall clock): a
    # figure for BENCHMARKS.md, not an assertion.
    await row.evaluate(
        """(tr) => new MutationObserver((_, observer) => {
            if (tr.children[2].textContent === '1') {
              tr.dataset.shownAt = String(performance.timeOrigin + performance.now())
              observer.disconnect()
            }
          }).observe(tr, { subtree: true, childList: true, characterData: true })"""
    )
    async with web_server.api(session.tokens["approver"]) as approver:
        started = time.time() * 1000
        await approver.json(
            "POST",
            f"/api/sessions/{session.id}/layers/{layer}/decision",
            json={"decision": "approve", "note": "ship it"},
        )
        await expect(cells.nth(2)).to_have_text("1")
    shown = (float(await row.get_attribute("data-shown-at") or "nan") - started) / 1000
    await expect(cells.nth(1)).to_have_text("0")
    await expect(cells.nth(6)).to_have_text("1.0")  # one round for the one pin
    # A new version, then a new session made elsewhere (the CLI, a script).
    await make_version(web_server, session, [200, 60, 80, 60])
    await expect(cells.nth(1)).to_have_text("1")
    await new_review(web_server, title="Made elsewhere")
    await page.locator("table.sessions tbody tr", has_text="Made elsewhere").wait_for()
    await shot(page, "producer-dashboard-live")
    assert not [u for u in urls if ADMIN_TOKEN in u], urls
    assert any("/api/events?ticket=" in u for u in urls), urls
    print(f"BENCH dashboard_decision_visible_s={shown:.3f}")


async def test_a_session_made_on_the_dashboard_keeps_its_share_links(
    open_page: OpenPage, web_server: RunningServer, tmp_path: Path
) -> None:
    picture = tmp_path / "shot.png"
    picture.write_bytes(scene_png())
    page = await open_page(None, "admin", path=f"/?token={ADMIN_TOKEN}")
    await page.locator("body[data-live=on]").wait_for()
    await page.get_by_label("Image").set_input_files(str(picture))
    await page.get_by_label("Title", exact=True).fill("Made on the dashboard")
    await page.get_by_role("button", name="Create session").click()
    await page.get_by_text("“Made on the dashboard” is ready").wait_for()
    # The five links shown once are there and stay there (the form's inputs are cleared).
    links = {}
    for role in ("viewer", "commenter", "editor", "approver", "owner"):
        box = page.get_by_label(f"{role} link")
        await expect(box).to_have_value(re.compile(r"/s/[^?]+\?token=pr_"))
        links[role] = await box.input_value()
    assert len(set(links.values())) == 5
    assert await page.get_by_label("Title", exact=True).input_value() == ""
    # The new session's row arrives by itself.
    await page.locator("table.sessions tbody tr", has_text="Made on the dashboard").wait_for()
    for role, link in links.items():
        assert await page.get_by_label(f"{role} link").input_value() == link
    await page.get_by_label("owner link").scroll_into_view_if_needed()
    await shot(page, "producer-new-session-links")


async def test_the_dashboard_catches_up_after_its_stream_is_dropped(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    """A dashboard that fell behind is cut off by the server; it reconnects with a new
    ticket and reloads, so what happened in between shows too."""
    page = await open_page(None, "admin", path=f"/?token={ADMIN_TOKEN}")
    await page.locator("body[data-live=on]").wait_for()
    tickets: list[str] = []
    page.on("request", lambda r: tickets.append(r.url) if "/api/events?ticket=" in r.url else None)
    bus = web_server.services.bus
    # More events at once than a subscriber's buffer holds: the server drops the stream.
    for n in range(1500):
        bus.publish(Event("test.flood", "nowhere", {"n": n}))
    await new_review(web_server, title="Made while catching up")
    await page.locator("table.sessions tbody tr", has_text="Made while catching up").wait_for()
    await page.locator("body[data-live=on]").wait_for()
    # It reconnected (the first stream's request came before the listener), with a new
    # ticket each time.
    assert len(tickets) >= 1 and len(set(tickets)) == len(tickets)
