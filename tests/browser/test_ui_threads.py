"""Threads and input: @mentions, Esc, decisions in a pin's thread, moving a pin, trackpads,
colours, the required approvals, and how fast typing and remote pins are (printed)."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from pycrdt import Map

from proofroom.client import ApiClient

from ..helpers import RunningServer, eventually
from .conftest import OpenPage
from .steps import drop_pin, make_version, new_review, shot, to_image, to_page, until

pytestmark = pytest.mark.asyncio(loop_scope="package")

#: presence.js's palette: ten colours, so ten people can each have their own.
PALETTE = [
    "#ff6b6b",
    "#4dabf7",
    "#51cf66",
    "#fcc419",
    "#cc5de8",
    "#ff922b",
    "#20c997",
    "#f06595",
    "#94d82d",
    "#748ffc",
]


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


async def test_enter_picks_a_mention_and_esc_leaves_the_field(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Mentions")
    async with web_server.client(session.id, session.tokens["commenter"]) as cal:
        cal.add_pin("p1", x=300, y=200, text="Too dark", author=session.users["commenter"])
        await cal.flush()
        editor = await open_page(session, "editor")
        commenter = await open_page(session, "commenter")
    room = web_server.services.rooms.rooms[session.id]

    # The editor replies with a mention picked by Enter: the name goes in, nothing is sent.
    await editor.locator('#markers .pin[data-pin-id="p1"]').click()
    reply = editor.get_by_label("Reply", exact=True)
    await reply.click()
    await reply.press_sequentially("On it @Ca")
    option = editor.get_by_role("option", name="@Cal Commenter")
    await option.wait_for()
    # The suggestions sit beside the reply box, not over the text being typed.
    popup, field = (
        await editor.locator(".reply .mention-list").bounding_box(),
        await reply.bounding_box(),
    )
    assert popup is not None and field is not None
    assert not overlap(popup, field), (popup, field)
    await shot(editor, "mention-suggestions")
    await reply.press("Enter")
    assert await reply.input_value() == "On it @Cal Commenter "
    assert await option.count() == 0
    assert len(room.pins["p1"]["thread"]) == 0
    await reply.press_sequentially("which blue?")
    await reply.press("Enter")
    await eventually(lambda: len(room.pins["p1"]["thread"]) > 0)
    await commenter.locator(".toast.mention").wait_for()
    # One reply, the whole of it: the Enter that picked the name sent nothing.
    assert [c["text"] for c in room.pins["p1"]["thread"]] == ["On it @Cal Commenter which blue?"]

    # The commenter's new pin: Enter on a suggestion picks it there too.
    await drop_pin(commenter, 600, 300, "Ask ")
    text = commenter.locator(".composer textarea")
    await text.press_sequentially("@Ed")
    await commenter.get_by_role("option", name="@Eddie Editor").wait_for()
    popup, field = (
        await commenter.locator(".composer .mention-list").bounding_box(),
        await text.bounding_box(),
    )
    assert popup is not None and field is not None and not overlap(popup, field)
    await text.press("Enter")
    assert await text.input_value() == "Ask @Eddie Editor "
    assert len(room.pins) == 1
    await text.press("Enter")
    await eventually(lambda: len(room.pins) == 2)

    # Esc leaves a text field: the next letters are shortcuts, not text.
    for page in (editor, commenter):
        reply = page.get_by_label("Reply", exact=True)
        await reply.fill("half a thought")
        await reply.press("Escape")
        assert await page.evaluate("() => document.activeElement.tagName") != "TEXTAREA"
        await page.keyboard.press("h")
        await page.locator("#stage[data-tool=hand]").wait_for()
        await page.keyboard.press("c")
        await page.locator("#stage[data-tool=pin]").wait_for()
        assert await reply.input_value() == "half a thought"


async def test_decisions_reach_the_pins_thread(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Decisions in the thread")
    layer = await make_version(web_server, session, [560, 40, 200, 160])
    pin = "p560"
    commenter = await open_page(session, "commenter")
    approver = await open_page(session, "approver")
    for page in (commenter, approver):
        await page.locator(f'#markers .pin[data-pin-id="{pin}"]').click()
        await page.locator(".thread-view .pin-text", has_text="fix this").wait_for()

    async def decide(role: str, decision: str, note: str) -> None:
        async with ApiClient(web_server.url, session.tokens[role]) as api:
            await api.json(
                "POST",
                f"/api/sessions/{session.id}/layers/{layer}/decision",
                json={"decision": decision, "note": note},
            )

    # The approver asks for changes: everyone on the pin's thread sees who, which version
    # and the note, live.
    await decide("approver", "request_changes", "Warmer light on the roof, please")
    for page in (commenter, approver):
        item = page.locator(".comments .decision[data-thread-decision=request_changes]")
        await item.wait_for()
        assert "Abby Approver" in await item.inner_text()
        assert "Requested changes" in await item.inner_text()
        assert "Version 1" in await item.inner_text()
        assert "Warmer light on the roof, please" in await item.inner_text()
    # The owner approves: the second decision follows the first, in order.
    await decide("owner", "approve", "")
    await commenter.locator(".comments .decision[data-thread-decision=approve]").wait_for()
    kinds = await commenter.locator(".comments .decision").evaluate_all(
        "els => els.map((e) => e.dataset.threadDecision)"
    )
    assert kinds == ["request_changes", "approve"]
    assert "Olga Owner" in await commenter.locator(".comments .decision").nth(1).inner_text()
    await shot(commenter, "thread-decisions")
    # The version named in the thread opens it.
    await (
        commenter.locator(".comments .decision")
        .first.get_by_role("button", name="Version 1")
        .click()
    )
    await commenter.locator("#panel-layers:not([hidden])").wait_for()


async def test_an_author_moves_their_pin_and_only_they_can(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Moving pins")
    async with web_server.client(session.id, session.tokens["commenter"]) as cal:
        cal.add_pin("p1", x=300, y=200, text="Here", author=session.users["commenter"])
        cal.add_pin(
            "p2",
            x=600,
            y=400,
            text="This region",
            author=session.users["commenter"],
            region=[550, 350, 100, 100],
        )
        await cal.flush()
        commenter = await open_page(session, "commenter")
        editor = await open_page(session, "editor")
    room = web_server.services.rooms.rooms[session.id]

    async def drag(page, pin_id: str, to: tuple[float, float]) -> None:
        box = await page.locator(f'#markers .pin[data-pin-id="{pin_id}"]').bounding_box()
        assert box is not None
        tip = (box["x"] + box["width"] / 2, box["y"] + box["height"])
        target = await to_page(page, *to)
        grab = (tip[0], tip[1] - 20)  # on the marker's head
        await page.mouse.move(*grab)
        await page.mouse.down()
        await page.mouse.move(grab[0] + target[0] - tip[0], grab[1] + target[1] - tip[1], steps=8)
        await page.mouse.up()

    # The author drags the point pin; the editor sees it move.
    await drag(commenter, "p1", (420, 330))
    await eventually(lambda: abs(room.pins["p1"]["x"] - 420) <= 1.5)
    assert abs(room.pins["p1"]["y"] - 330) <= 1.5
    moved = editor.locator('#markers .pin[data-pin-id="p1"]')

    async def seen_moved() -> bool:
        return abs(float(await moved.get_attribute("data-x") or 0) - 420) <= 1.5

    await until(seen_moved)
    # A move is not a click: the thread did not open.
    assert await commenter.locator(".thread-view").is_hidden()
    # A region moves with its pin.
    await drag(commenter, "p2", (700, 300))
    await eventually(lambda: abs(room.pins["p2"]["x"] - 700) <= 1.5)
    region = list(room.pins["p2"]["region"])
    assert abs(region[0] - 650) <= 2 and abs(region[1] - 250) <= 2 and region[2:] == [100, 100]
    await shot(commenter, "pin-moved")

    # Someone else's pin does not move: the editor's drag leaves it where it is.
    before = (room.pins["p1"]["x"], room.pins["p1"]["y"])
    await drag(editor, "p1", (200, 500))
    assert (room.pins["p1"]["x"], room.pins["p1"]["y"]) == before
    box = await editor.locator('#markers .pin[data-pin-id="p1"]').bounding_box()
    expected = await to_page(editor, *before)
    assert box is not None and abs(box["x"] + box["width"] / 2 - expected[0]) <= 1.5
    # ... and a plain click on one's own pin still opens its thread.
    await commenter.locator('#markers .pin[data-pin-id="p1"]').click()
    await commenter.locator(".thread-view .pin-text", has_text="Here").wait_for()


async def test_trackpad_scroll_pans_and_pinch_zooms(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Trackpad")
    page = await open_page(session, "commenter")

    async def view() -> list[float]:
        return [
            float(v) for v in (await page.locator("#stage").get_attribute("data-view")).split(",")
        ]

    async def wheel(x: float, y: float, dx: float, dy: float, ctrl: bool = False) -> None:
        # What a trackpad sends: pixel deltas in both axes; a pinch is a wheel with ctrlKey.
        await page.evaluate(
            """([x, y, dx, dy, ctrl]) => document.getElementById('stage').dispatchEvent(
              new WheelEvent('wheel', {clientX: x, clientY: y, deltaX: dx, deltaY: dy,
                deltaMode: 0, ctrlKey: ctrl, bubbles: true, cancelable: true}))""",
            [x, y, dx, dy, ctrl],
        )

    sx, sy = await to_page(page, 480, 320)
    s0, tx0, ty0 = await view()
    await wheel(sx, sy, 0, 60)  # two fingers up: the picture moves up
    s1, tx1, ty1 = await view()
    assert s1 == s0 and tx1 == tx0 and ty1 == ty0 - 60
    await wheel(sx, sy, 45, 0)  # sideways
    s2, tx2, ty2 = await view()
    assert s2 == s0 and tx2 == tx0 - 45 and ty2 == ty1
    # A pinch (ctrlKey, small deltas) zooms in about the pointer.
    under = await to_image(page, sx, sy)
    for _ in range(10):
        await wheel(sx, sy, 0, -8, ctrl=True)
    s3, _, _ = await view()
    assert s3 > 1.5 * s0
    after = await to_page(page, *under)
    assert abs(after[0] - sx) <= 0.5 and abs(after[1] - sy) <= 0.5
    # Ctrl + a mouse wheel zooms out again.
    await page.keyboard.down("Control")
    await page.mouse.move(sx, sy)
    await page.mouse.wheel(0, 300)
    await page.keyboard.up("Control")

    async def zoomed_out() -> bool:
        return (await view())[0] < s3

    await until(zoomed_out)
    await shot(page, "trackpad-zoomed")


async def test_two_people_never_share_a_colour(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Colours")
    others = []
    try:
        # Eight people already here show eight of the ten colours.
        for colour in PALETTE[:8]:
            client = web_server.client(session.id, session.tokens["viewer"])
            await client.__aenter__()
            others.append(client)
            await client.set_awareness({"user": {"name": "x", "colour": colour}})
        commenter = await open_page(session, "commenter")
        editor = await open_page(session, "editor")

        async def colour(page) -> str:
            await page.get_by_role("tab", name="People").click()
            return str(
                await page.locator(".person.me .dot").evaluate(
                    "el => el.style.getPropertyValue('--c')"
                )
            )

        async def distinct() -> bool:
            mine = {await colour(commenter), await colour(editor)}
            return len(mine) == 2 and not mine & set(PALETTE[:8])

        await until(distinct)
        # Everyone sees the colours the two chose.
        await commenter.locator(".person:not(.me)", has_text="Eddie Editor").wait_for()
        theirs = (
            await commenter.locator(".person", has_text="Eddie Editor")
            .locator(".dot")
            .evaluate("el => el.style.getPropertyValue('--c')")
        )
        assert theirs == await colour(editor)
        await shot(commenter, "people-colours")
    finally:
        for client in others:
            await client.__aexit__(None, None, None)


async def test_an_owner_sets_the_required_approvals(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    session = await new_review(web_server, title="Two approvals")
    owner = await open_page(session, "owner")
    approver = await open_page(session, "approver")
    await owner.get_by_role("tab", name="Share").click()
    # Names are never cut short ("Commen…") in the invites or the people lists.
    await owner.locator(".invites li", has_text="Commenter link").wait_for()
    await owner.get_by_role("tab", name="People").click()
    await owner.locator(".person", has_text="Abby Approver").wait_for()
    await owner.get_by_role("tab", name="Share").click()
    cut = await owner.locator(".invites .person-name, .people .person-name").evaluate_all(
        "els => els.filter((e) => e.scrollWidth > e.clientWidth).map((e) => e.textContent)"
    )
    assert cut == []
    field = owner.get_by_label("Approvals a version needs")
    assert await field.input_value() == "1"
    await field.fill("2")
    await field.press("Enter")
    await owner.locator(".toast", has_text="now needs 2 approvals").wait_for()
    info = await web_server.admin.json("GET", f"/api/sessions/{session.id}")
    assert info["required_approvals"] == 2
    # A value out of range is refused with a message, and nothing changes.
    await field.fill("0")
    await owner.get_by_role("button", name="Save").click()
    await owner.locator(".toast.error", has_text="1 to 20").wait_for()
    info = await web_server.admin.json("GET", f"/api/sessions/{session.id}")
    assert info["required_approvals"] == 2
    await shot(owner, "required-approvals")
    # Only owners have the control.
    assert not await approver.get_by_role("tab", name="Share").is_visible()
    assert await approver.get_by_label("Approvals a version needs").count() == 0


async def test_speed_remote_pins_and_typing_while_jobs_report_progress(
    open_page: OpenPage, web_server: RunningServer
) -> None:
    """Measured and printed for BENCHMARKS.md, not asserted."""
    session = await new_review(web_server, title="Speed")
    commenter = await open_page(session, "commenter")
    editor = await open_page(session, "editor")

    # A pin from one browser to the other: Enter in one, the marker in the other.
    latencies = []
    for i in range(5):
        await drop_pin(commenter, 100 + 150 * i, 300, f"pin {i}")
        await editor.evaluate(
            """(n) => { window.__seen = new Promise((resolve) => {
              const obs = new MutationObserver(() => {
                if (document.querySelectorAll('#markers .pin').length >= n) {
                  obs.disconnect(); resolve(performance.timeOrigin + performance.now())
                }
              })
              obs.observe(document.getElementById('markers'), {childList: true})
            }) }""",
            i + 1,
        )
        await commenter.evaluate(
            """() => window.addEventListener('keydown', (e) => {
              if (e.key === 'Enter') window.__sentAt = performance.timeOrigin + performance.now()
            }, {capture: true, once: true})"""
        )
        await commenter.keyboard.press("Enter")
        seen = await editor.evaluate("window.__seen")
        latencies.append(seen - await commenter.evaluate("window.__sentAt"))
    print(
        f"\nremote pin visible: median {statistics.median(latencies):.1f} ms,"
        f" max {max(latencies):.1f} ms over {len(latencies)}"
    )

    # The editor types a reply: first with nothing else going on, then while eight jobs
    # report progress (the server's room writes them, as the publisher does).
    await editor.locator("#markers .pin").first.click()
    reply = editor.get_by_label("Reply", exact=True)
    await editor.evaluate(
        """() => {
          window.__keys = []
          let down = null
          const box = document.querySelector('.reply textarea')
          box.addEventListener('keydown', (e) => { down = e.timeStamp }, {capture: true})
          // Last of the input's handlers: from the key's event time to the end of its
          // handling, so a main thread busy with job updates counts.
          window.addEventListener('input', () => {
            if (down !== null) window.__keys.push(performance.now() - down)
            down = null
          })
        }"""
    )
    typed = "The roof should be warmer, and the sky a touch less saturated near the sun."

    async def type_reply() -> list[float]:
        await reply.fill("")
        await editor.evaluate("() => { window.__keys = [] }")
        await reply.press_sequentially(typed, delay=30)
        assert await reply.input_value() == typed
        return sorted(await editor.evaluate("window.__keys"))

    def summary(keys: list[float]) -> str:
        p95 = keys[int(len(keys) * 0.95) - 1]
        return (
            f"per key median {statistics.median(keys):.2f} ms, p95 {p95:.2f} ms,"
            f" max {max(keys):.2f} ms over {len(keys)} keys"
        )

    print(f"typing, nothing else happening: {summary(await type_reply())}")
    room = web_server.services.rooms
    pin_id = next(iter(room.rooms[session.id].pins.keys()))
    jobs = [f"bench-job-{i}" for i in range(8)]

    def start(r) -> None:
        for i, job in enumerate(jobs):
            r.jobs[job] = Map(
                {
                    "pin_id": pin_id,
                    "status": "running",
                    "step": 0,
                    "total": 200,
                    "created_at": time.time() + i / 1000,
                    "started_at": time.time(),
                    "position": 0,
                }
            )

    await room.server_write(session.id, start)
    stop = asyncio.Event()
    updates = 0

    async def progress() -> None:
        nonlocal updates
        step = 0
        while not stop.is_set():
            step += 1
            for job in jobs:

                def write(r, job: str = job, step: int = step) -> None:
                    r.jobs[job]["step"] = step % 200

                await room.server_write(session.id, write)
                updates += 1
            await asyncio.sleep(0.125)  # each job reports 8 times a second

    reporter = asyncio.create_task(progress())
    try:
        started = updates
        keys = await type_reply()
        during = updates - started
    finally:
        stop.set()
        await reporter
    print(f"typing while 8 jobs report progress ({during} job updates): {summary(keys)}")
