"""Two people in one session: pins, replies, mentions, presence, and what a viewer can't do."""

from __future__ import annotations

import pytest

from proofroom.shared import codec

from ..helpers import RunningServer, eventually
from .conftest import OpenPage
from .steps import drop_pin, new_review, shot, to_image, to_page, until

pytestmark = pytest.mark.asyncio(loop_scope="package")


async def test_a_pin_dropped_in_one_browser_appears_in_the_other(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server)
    # Each opens their role's link and joins through its name form.
    commenter = await open_page(session, "commenter", join="Cal Commenter")
    editor = await open_page(session, "editor", join="Eddie Editor")
    # Presence: each sees the other in the participant list, with their role.
    await editor.get_by_role("tab", name="People").click()
    await (
        editor.locator(".person", has_text="Cal Commenter")
        .locator(".badge.role-commenter")
        .wait_for()
    )

    await drop_pin(commenter, 420, 300, "The door should be blue, not red")
    # Time from the Enter that creates the pin to its marker in the other browser
    # (one machine, so both pages share a clock).
    await editor.evaluate(
        """() => new Promise((resolve) => {
          new MutationObserver((_, obs) => {
            if (document.querySelector('#markers .pin')) {
              window.__pinSeenAt = performance.timeOrigin + performance.now()
              obs.disconnect()
            }
          }).observe(document.getElementById('markers'), {childList: true})
          resolve()
        })"""
    )
    await commenter.evaluate(
        """() => window.addEventListener('keydown', (e) => {
          if (e.key === 'Enter') window.__sentAt = performance.timeOrigin + performance.now()
        }, {capture: true, once: true})"""
    )
    await commenter.keyboard.press("Enter")
    marker = editor.locator("#markers .pin")
    await marker.wait_for()
    latency = await editor.evaluate("window.__pinSeenAt") - await commenter.evaluate(
        "window.__sentAt"
    )
    print(f"\npin from one browser visible in the other after {latency:.1f} ms")
    assert await marker.get_attribute("data-x") == "420"

    # The editor opens the thread and replies, mentioning the commenter.
    await marker.click()
    await editor.get_by_label("Reply", exact=True).fill("On it @Cal")
    await editor.get_by_role("option", name="@Cal Commenter").click()
    await editor.get_by_label("Reply", exact=True).press("End")
    await editor.get_by_label("Reply", exact=True).type("— which blue?")
    await editor.get_by_role("button", name="Reply", exact=True).click()

    # The commenter sees the reply with the mention highlighted, and is told about it.
    await commenter.locator(".comment .mention.me", has_text="@Cal Commenter").wait_for()
    await commenter.locator(".toast.mention").wait_for()
    # ... and where the editor points, on the same image pixel.
    await editor.mouse.move(*(await to_page(editor, 600, 200)))
    cursor = commenter.locator(".cursor", has_text="Eddie Editor")
    await cursor.wait_for()
    expected = await to_page(commenter, 600, 200)

    async def on_the_point() -> bool:  # cursors glide (80 ms) between positions
        box = await cursor.bounding_box()
        assert box is not None
        return abs(box["x"] - expected[0]) <= 2 and abs(box["y"] - expected[1]) <= 2

    await until(on_the_point)
    await shot(commenter, "pin-thread-commenter")
    await shot(editor, "pin-thread-editor")

    # Resolve: only the author has the button; the other browser sees the new state.
    assert await editor.get_by_role("button", name="Resolve (R)").count() == 0
    await commenter.get_by_role("button", name="Resolve (R)").click()
    await editor.locator(".thread-title .badge.resolved").wait_for()
    await commenter.keyboard.press("r")  # the shortcut reopens it
    await editor.locator(".thread-title .badge.open").wait_for()


async def test_a_viewer_cannot_edit(open_page: OpenPage, web_server: RunningServer) -> None:
    session = await new_review(web_server, title="Viewer check")
    async with web_server.client(session.id, session.tokens["editor"]) as editor:
        editor.add_pin("p1", x=200, y=150, text="crop tighter", author=session.users["editor"])
        await editor.flush()
        viewer = await open_page(session, "viewer")
        await viewer.locator("#markers .pin").wait_for()

        # No edit affordances: no pin, mask or lock tools, no Fix or Share tab.
        assert (
            await viewer.locator("[data-tool=pin], [data-tool=brush], [data-tool=lock]").count()
            == 0
        )
        assert not await viewer.get_by_role("tab", name="Fix").is_visible()
        assert not await viewer.get_by_role("tab", name="Share").is_visible()
        # Trying anyway: the pin shortcut, clicks and keys on the canvas do nothing.
        await viewer.keyboard.press("c")
        sx, sy = await to_page(viewer, 500, 400)
        await viewer.mouse.click(sx, sy)
        assert await viewer.locator(".composer").count() == 0
        await viewer.locator("#markers .pin").click()
        await viewer.locator(".thread-view .pin-text", has_text="crop tighter").wait_for()
        assert await viewer.get_by_label("Reply", exact=True).count() == 0
        assert await viewer.get_by_role("button", name="Resolve (R)").count() == 0
        await viewer.keyboard.press("r")
        await viewer.keyboard.press("Enter")
        await shot(viewer, "viewer-read-only")

        # Nothing reached the server, and the viewer's document never changed locally:
        # its client id is not in the document's state vector.
        room = web_server.services.rooms.rooms[session.id]
        viewer_ids = [
            cid
            for cid, state in room.awareness.states().items()
            if state["user"]["role"] == "viewer"
        ]
        assert len(viewer_ids) == 1
        await eventually(lambda: len(editor.peers) == 1)
        assert viewer_ids[0] not in codec.decode_state_vector(room.doc.get_state())
        assert list(room.pins.keys()) == ["p1"]
        assert room.pins["p1"]["status"] == "open"
        assert await viewer.locator(".toast.error").count() == 0
        # The shortcut sheet.
        await viewer.keyboard.press("?")
        await viewer.locator("dialog#help[open]").wait_for()
        await shot(viewer, "shortcuts-help")
        await viewer.keyboard.press("Escape")
        await viewer.locator("dialog#help[open]").wait_for(state="detached")


async def test_following_a_presenter_who_allows_it(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Presenting")
    presenter = await open_page(session, "editor")
    follower = await open_page(session, "viewer")
    await follower.get_by_role("tab", name="People").click()
    person = follower.locator(".person", has_text="Eddie Editor")
    await person.wait_for()
    assert await person.get_by_role("button", name="Follow").count() == 0  # not offered yet
    await presenter.get_by_role("tab", name="People").click()
    await presenter.get_by_label("Let others follow my view").check()
    await person.get_by_role("button", name="Follow").click()
    await presenter.locator(".person", has_text="follows you").wait_for()

    # The presenter zooms in on the sun; the follower sees the same place.
    sx, sy = await to_page(presenter, 760, 130)
    await presenter.mouse.move(sx, sy)
    await presenter.keyboard.down("Control")
    for _ in range(4):
        await presenter.mouse.wheel(0, -240)
    await presenter.keyboard.up("Control")

    async def centre(page) -> tuple[float, float]:
        box = await page.locator("#stage").bounding_box()
        assert box is not None
        return await to_image(page, box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    async def scale(page) -> float:
        return float((await page.locator("#stage").get_attribute("data-view")).split(",")[0])

    async def same_view() -> bool:  # viewports are published ten times a second
        (px, py), (fx, fy) = await centre(presenter), await centre(follower)
        zoom = await scale(follower) / await scale(presenter)
        return abs(px - fx) <= 2 and abs(py - fy) <= 2 and abs(zoom - 1) < 0.01

    await until(same_view)
    await shot(follower, "following-presenter")
    # Moving one's own view stops following.
    await follower.keyboard.press("-")
    await follower.locator(".toast", has_text="Stopped following").wait_for()
    assert await person.get_by_role("button", name="Follow").count() == 1


async def test_two_people_on_one_link_are_two_participants(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="One link, two people")
    ana = await open_page(session, "commenter", join="Ana")
    # The link's token left the address bar: only the session is in it.
    assert ana.url == f"{web_server.url}/s/{session.id}"
    ben = await open_page(session, "commenter", join="Ben")
    for page, other in ((ana, "Ben"), (ben, "Ana")):
        await page.get_by_role("tab", name="People").click()
        await page.locator(".person", has_text=other).locator(".badge.role-commenter").wait_for()

    await drop_pin(ana, 300, 200, "Ana's note")
    await ana.keyboard.press("Enter")
    await drop_pin(ben, 600, 400, "Ben's note")
    await ben.keyboard.press("Enter")
    room = web_server.services.rooms.rooms[session.id]
    await eventually(lambda: len(room.pins) == 2)
    people = await web_server.admin.json("GET", f"/api/sessions/{session.id}/participants")
    by_text = {
        str(pin["text"]): people["participants"][pin["author"]]["name"]
        for pin in room.pins.to_py().values()
    }
    assert by_text == {"Ana's note": "Ana", "Ben's note": "Ben"}
    # Each browser shows the other's name on their pin, and in presence.
    await ana.get_by_role("button", name="by Ben: Ben's note").wait_for()
    await ben.get_by_role("button", name="by Ana: Ana's note").wait_for()
    names = {s["user"]["name"] for s in room.awareness.states().values()}
    assert names == {"Ana", "Ben"}

    # A reload is the same person (the browser remembered the personal token) ...
    await ana.reload()
    await ana.wait_for_selector("body[data-state=ready]")
    assert await ana.locator("#me-name").inner_text() == "Ana"
    # ... and so is opening the same link again in the same browser: no second prompt.
    await ana.goto(f"{web_server.url}/s/{session.id}?token={session.links['commenter']}")
    await ana.wait_for_selector("body[data-state=ready]")
    assert await ana.locator("#me-name").inner_text() == "Ana"
    assert ana.url == f"{web_server.url}/s/{session.id}"
    await shot(ben, "two-people-one-link")
