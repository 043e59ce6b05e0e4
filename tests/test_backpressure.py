"""Sending to participants: one prepared frame for all, and a socket that stops draining."""

from __future__ import annotations

from pathlib import Path

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from proofroom.server.web.fanout import binary_frame
from proofroom.shared.protocol import CloseCode

from .helpers import run_server


def _paused(client: object) -> object:
    """The client's socket transport (the test stops reading it, as a stalled tab would)."""
    ws = client._ws  # type: ignore[attr-defined]
    assert ws is not None
    return ws.transport


async def test_a_stalled_reader_catches_up_with_every_update_in_order(tmp_path: Path) -> None:
    async with run_server(tmp_path / "d", updates_per_second=1000, updates_burst=5000) as server:
        session = await server.new_session()
        me = session.users["editor"]
        metrics = server.services.metrics
        async with (
            server.client(session.id, session.tokens["editor"]) as writer,
            server.client(session.id, session.tokens["viewer"]) as stalled,
        ):
            writer.add_pin("p", x=1, y=1, text="start", author=me)
            await stalled.wait_for(lambda: "p" in stalled.pins)
            waited_before = metrics.sends_waited.value
            transport = _paused(stalled)
            transport.pause_reading()  # type: ignore[attr-defined]
            # ~8 MB of edits: more than the kernel buffers hold, so the server's sends to
            # the stalled reader must wait in its queue.
            for i in range(800):
                writer.pins["p"]["text"] = f"{i:05d}" + "x" * 9_990
                await writer.flush()
            # More than one message waited (the first one waits on the socket itself).
            await writer.wait_for(lambda: metrics.sends_waited.value > waited_before + 10)
            transport.resume_reading()  # type: ignore[attr-defined]
            await stalled.wait_for(
                lambda: stalled.pins.get("p", {}).get("text", "").startswith("00799"),
                timeout=30,
            )
            assert stalled.connected
            assert stalled.state() == writer.state()


async def test_a_reader_that_falls_too_far_behind_is_closed_alone(tmp_path: Path) -> None:
    async with run_server(
        tmp_path / "d",
        updates_per_second=1000,
        updates_burst=5000,
        max_send_queue_bytes=256 * 1024,
    ) as server:
        session = await server.new_session()
        me = session.users["editor"]
        async with (
            server.client(session.id, session.tokens["editor"]) as writer,
            server.client(session.id, session.tokens["viewer"]) as stalled,
            server.client(session.id, session.tokens["viewer"]) as other,
        ):
            writer.add_pin("p", x=1, y=1, text="start", author=me)
            await stalled.wait_for(lambda: "p" in stalled.pins)
            transport = _paused(stalled)
            transport.pause_reading()  # type: ignore[attr-defined]
            for i in range(800):
                writer.pins["p"]["text"] = f"{i:05d}" + "x" * 9_990
                await writer.flush()
            transport.resume_reading()  # type: ignore[attr-defined]
            await stalled.wait_for(lambda: stalled.closed is not None, timeout=30)
            assert stalled.closed is not None and stalled.closed[0] == CloseCode.TOO_SLOW
            await other.wait_for(
                lambda: other.pins.get("p", {}).get("text", "").startswith("00799")
            )
            assert other.connected and writer.connected


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 3_000_000])
def test_prepared_frames_parse_as_one_binary_message(size: int) -> None:
    # Parsed by the websockets library, as a client would: the one frame shared by every
    # participant of a broadcast must be a complete, unmasked binary message.
    message = bytes(range(256)) * (size // 256) + bytes(size % 256)
    reader = StreamReader()
    reader.feed_data(binary_frame(message))
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    with pytest.raises(StopIteration) as done:
        next(parser)
    frame = done.value.value
    assert frame.opcode is Opcode.BINARY and frame.fin
    assert frame.data == message
    assert binary_frame(message) is binary_frame(message)  # framed once per broadcast
