"""Webhooks: signed, durable, retried deliveries to real local HTTP endpoints."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from proofroom.client import ApiClient, ApiError
from proofroom.server.review.webhooks import WebhookConfig, backoff_delay

from .helpers import RunningServer, run_server
from .review_steps import decide, put_pin, upload_version, wait_for_pin
from .webhook_receiver import HANG, Receiver

SECRET = "whsec_test"
FAST = {"webhook_backoff_seconds": 0.01, "webhook_backoff_max_seconds": 0.05}


async def new_version(server: RunningServer) -> tuple[str, str, dict[str, str]]:
    """A session with one uploaded version (a ``layer.created`` event); its ids and tokens."""
    session = await server.new_session()
    async with server.client(session.id, session.tokens["editor"]) as editor:
        await put_pin(editor, "p1", session.users["editor"], 1.0)
        await wait_for_pin(server, session.id, "p1")
    async with ApiClient(server.url, session.tokens["editor"]) as edit:
        layer = await upload_version(edit, session.id, "p1", (9, 9, 9))
    return session.id, layer, session.tokens


async def rows(server: RunningServer) -> dict[str, dict[str, Any]]:
    """The outbox by delivery id, as ``GET /api/webhooks/deliveries`` shows it."""
    body = await server.admin.json("GET", "/api/webhooks/deliveries")
    return {row["id"]: row for row in body["deliveries"]}


async def settled(server: RunningServer, delivery: str, status: str) -> dict[str, Any]:
    outbox: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while (row := (outbox := await rows(server)).get(delivery)) is None or row["status"] != status:
        assert time.monotonic() < deadline, outbox.get(delivery)
        await asyncio.sleep(0.01)
    return row


async def test_events_are_delivered_signed(tmp_path: Path) -> None:
    async with (
        Receiver() as rx,
        run_server(tmp_path / "data", webhook_urls=rx.url("/hook"), webhook_secret=SECRET) as srv,
    ):
        sid, layer, tokens = await new_version(srv)
        async with ApiClient(srv.url, tokens["approver"]) as approver:
            await decide(approver, sid, layer, "approve", "ship it")
        await rx.wait_for(lambda: len(rx.on("/hook")) == 2)
        created, decided = rx.on("/hook")
        for req in (created, decided):
            expected = hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
            assert req.headers["x-proofroom-signature"] == f"sha256={expected}"
            assert req.headers["content-type"] == "application/json"
            assert uuid.UUID(req.delivery).version == 4
            assert abs(int(req.headers["x-proofroom-timestamp"]) - time.time()) < 3600
            body = json.loads(req.body)
            assert body["type"] == req.headers["x-proofroom-event"]
            assert body["session"] == sid
        assert json.loads(created.body)["type"] == "layer.created"
        assert json.loads(created.body)["data"]["layer"] == layer
        event = json.loads(decided.body)
        assert event["type"] == "layer.decision"
        assert event["data"]["state"] == "approved" and event["data"]["note"] == "ship it"
        assert created.delivery != decided.delivery
        for req in (created, decided):
            row = await settled(srv, req.delivery, "delivered")
            assert row["attempts"] == 1 and row["last_status"] == 200


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_failing_endpoint_is_retried_until_it_answers(tmp_path: Path, status: int) -> None:
    async with (
        Receiver() as rx,
        run_server(tmp_path / "d", webhook_urls=rx.url("/h"), **FAST) as srv,
    ):
        rx.plan("/h", status, status, 200)
        await new_version(srv)
        await rx.wait_for(lambda: len(rx.on("/h")) == 3)
        attempts = rx.on("/h")
        assert len({r.delivery for r in attempts}) == 1
        row = await settled(srv, attempts[0].delivery, "delivered")
        assert row["attempts"] == 3 and row["last_status"] == 200 and row["last_error"] is None


async def test_a_client_error_is_final(tmp_path: Path) -> None:
    async with (
        Receiver() as rx,
        run_server(tmp_path / "d", webhook_urls=rx.url("/h"), **FAST) as srv,
    ):
        rx.plan("/h", 410)
        await new_version(srv)
        await rx.wait_for(lambda: len(rx.on("/h")) == 1)
        refused = rx.on("/h")[0].delivery
        row = await settled(srv, refused, "failed")
        assert row["attempts"] == 1 and row["last_status"] == 410
        # The next event still goes out, and the refused one was never tried again.
        await new_version(srv)
        await rx.wait_for(lambda: len(rx.on("/h")) == 2)
        await settled(srv, rx.on("/h")[1].delivery, "delivered")
        assert [r.delivery for r in rx.on("/h")].count(refused) == 1


async def test_giving_up_after_max_attempts(tmp_path: Path) -> None:
    async with (
        Receiver() as rx,
        run_server(
            tmp_path / "d", webhook_urls=rx.url("/h"), webhook_max_attempts=3, **FAST
        ) as srv,
    ):
        rx.default["/h"] = 502
        await new_version(srv)
        await rx.wait_for(lambda: len(rx.on("/h")) == 3)
        row = await settled(srv, rx.on("/h")[0].delivery, "failed")
        assert row["attempts"] == 3 and row["last_status"] == 502


async def test_a_hanging_endpoint_times_out_without_holding_up_others(tmp_path: Path) -> None:
    async with Receiver() as rx:
        urls = f"{rx.url('/slow')},{rx.url('/fast')}"
        async with run_server(
            tmp_path / "d", webhook_urls=urls, webhook_timeout_seconds=2.0, **FAST
        ) as srv:
            rx.plan("/slow", HANG, 200)
            sid, layer, tokens = await new_version(srv)
            await rx.wait_for(lambda: len(rx.on("/fast")) == 1 and len(rx.on("/slow")) == 1)
            fast = await settled(srv, rx.on("/fast")[0].delivery, "delivered")
            # The healthy endpoint got its event while the other one's first try still hangs.
            slow = (await rows(srv))[rx.on("/slow")[0].delivery]
            assert slow["status"] == "pending" and slow["attempts"] == 0
            assert fast["finished_at"] < rx.on("/slow")[0].at + 2.0
            # Requests and publishing are not held up either.
            async with ApiClient(srv.url, tokens["approver"]) as approver:
                await decide(approver, sid, layer, "reject")
            await rx.wait_for(lambda: len(rx.on("/fast")) == 2)
            # The hanging try times out and is retried (and answered this time).
            first = rx.on("/slow")[0]
            await rx.wait_for(
                lambda: [r.delivery for r in rx.on("/slow")].count(first.delivery) == 2
            )
            row = await settled(srv, first.delivery, "delivered")
            assert row["attempts"] == 2
            retry = [r for r in rx.on("/slow") if r.delivery == first.delivery][1]
            # Retried only once the first try's deadline had passed.
            assert retry.at - first.at >= 1.9


async def test_pending_deliveries_resume_after_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with Receiver() as rx:
        settings = {"webhook_urls": rx.url("/h"), "webhook_secret": SECRET, **FAST}
        rx.default["/h"] = 503  # down while the first server runs
        async with run_server(data, **settings) as srv:
            await new_version(srv)
            await rx.wait_for(lambda: len(rx.on("/h")) >= 2)
            delivery = rx.on("/h")[0].delivery
        with sqlite3.connect(data / "proofroom.sqlite3") as db:
            [(status, attempts)] = db.execute(
                "SELECT status, attempts FROM webhook_deliveries WHERE id = ?", (delivery,)
            ).fetchall()
        assert status == "pending" and attempts >= 1
        tried = len(rx.on("/h"))
        rx.default["/h"] = 200  # up again
        async with run_server(data, **settings) as srv:
            row = await settled(srv, delivery, "delivered")
        later = rx.on("/h")[tried:]
        assert later and {r.delivery for r in later} == {delivery}
        assert row["attempts"] == attempts + len(later)
        expected = hmac.new(SECRET.encode(), later[-1].body, hashlib.sha256).hexdigest()
        assert later[-1].headers["x-proofroom-signature"] == f"sha256={expected}"


async def test_no_webhooks_no_outbox(server: RunningServer) -> None:
    await new_version(server)
    await server.services.db.write()
    assert await rows(server) == {}


def test_bad_webhook_settings_fail_at_start() -> None:
    for bad in ({"urls": ("ftp://example.org/x",)}, {"urls": ("/relative",)}, {"timeout": 0}):
        with pytest.raises(ValueError):
            WebhookConfig(**bad)  # type: ignore[arg-type]


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    config = WebhookConfig(backoff=1.0, backoff_max=8.0)
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        for _ in range(50):
            assert ceiling / 2 <= backoff_delay(config, attempts) <= ceiling
    assert backoff_delay(config, 1, retry_after=5.0) >= 5.0
    assert backoff_delay(config, 1, retry_after=500.0) <= 8.0


async def test_the_outbox_is_for_the_admin_only(server: RunningServer) -> None:
    session = await server.new_session()
    async with ApiClient(server.url, session.tokens["owner"]) as owner:
        with pytest.raises(ApiError) as err:
            await owner.json("GET", "/api/webhooks/deliveries")
    assert err.value.status == 403
