from __future__ import annotations

from .helpers import ReviewSession, RunningServer


async def test_two_clients_see_each_others_pins(
    server: RunningServer, session: ReviewSession
) -> None:
    async with (
        server.client(session.id, session.tokens["commenter"]) as a,
        server.client(session.id, session.tokens["viewer"]) as b,
    ):
        assert b.meta["title"] == "Test review"
        a.add_pin("p1", x=3, y=4, text="hi", author=session.users["commenter"])
        await b.wait_for(lambda: "p1" in b.pins)
        assert b.pins["p1"]["text"] == "hi"
