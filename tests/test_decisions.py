"""Decisions on layers and the state rule (DESIGN.md section 6), the bad input around
fixes and versions, and export with its provenance.

One server serves the module; each test makes its own session.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image
from pycrdt import Map

from proofroom.client import ApiClient, ApiError, SessionClient
from proofroom.server.review.decisions import MAX_NOTE_CHARS, layer_state, variant_states
from proofroom.shared.enums import Decision, LayerState

from .helpers import (
    ADMIN_TOKEN,
    RunningServer,
    decode,
    encode_png,
    eventually,
    join_session,
    run_server,
)
from .images import sized

#: The async tests share the module's event loop, where its one server runs.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

A, C, R = Decision.APPROVE, Decision.REQUEST_CHANGES, Decision.REJECT
PENDING, APPROVED = LayerState.PENDING, LayerState.APPROVED
CHANGES, REJECTED = LayerState.CHANGES_REQUESTED, LayerState.REJECTED


# -- the state rule, as a unit ----------------------------------------------------------------

# (decisions, required approvals, state), written out.
RULE_EXAMPLES = [
    ((), 1, PENDING),
    ((), 2, PENDING),
    ((A,), 1, APPROVED),
    ((A,), 2, PENDING),
    ((A, A), 2, APPROVED),
    ((A, A, A), 2, APPROVED),
    ((C,), 1, CHANGES),
    ((R,), 1, REJECTED),
    ((A, C), 1, CHANGES),
    ((C, A), 1, CHANGES),
    ((A, R), 1, REJECTED),
    ((C, R), 2, REJECTED),
    ((R, C, A), 1, REJECTED),
    ((A, A, C), 2, CHANGES),
    ((A, A, R), 1, REJECTED),
    ((C, C), 1, CHANGES),
    ((R, R), 2, REJECTED),
]


@pytest.mark.parametrize(("decisions", "required", "state"), RULE_EXAMPLES)
def test_state_rule_examples(
    decisions: tuple[Decision, ...], required: int, state: LayerState
) -> None:
    assert layer_state(list(decisions), required) is state


def expected_state(decisions: tuple[Decision, ...], required: int) -> LayerState:
    """The rule in words: the least favourable decision so far; approved only with enough."""
    if R in decisions:
        return REJECTED
    if C in decisions:
        return CHANGES
    if decisions.count(A) >= required:
        return APPROVED
    return PENDING


@pytest.mark.parametrize("required", [1, 2])
def test_state_rule_over_every_combination(required: int) -> None:
    seen = set()
    for n in range(5):  # up to four people
        for decisions in itertools.product(Decision, repeat=n):
            state = layer_state(list(decisions), required)
            assert state is expected_state(decisions, required), (decisions, required)
            # Who decided first does not matter.
            for order in itertools.permutations(decisions):
                assert layer_state(list(order), required) is state
            seen.add(state)
    # Superseded is not a decision's outcome: it comes from a sibling's (below).
    assert seen == set(LayerState) - {LayerState.SUPERSEDED}


SUPERSEDED = LayerState.SUPERSEDED


@pytest.mark.parametrize(
    ("derived", "final"),
    [
        ((PENDING, PENDING, PENDING), (PENDING, PENDING, PENDING)),
        ((PENDING, APPROVED, PENDING), (SUPERSEDED, APPROVED, SUPERSEDED)),
        ((REJECTED, APPROVED, CHANGES), (REJECTED, APPROVED, CHANGES)),
        # Approvals lowered under two approved variants: the first made is kept.
        ((APPROVED, APPROVED), (APPROVED, SUPERSEDED)),
        ((APPROVED,), (APPROVED,)),
        ((), ()),
    ],
)
def test_approving_one_variant_supersedes_the_undecided_siblings(
    derived: tuple[LayerState, ...], final: tuple[LayerState, ...]
) -> None:
    assert tuple(variant_states(list(derived))) == final


# -- a meeting on a real server ----------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def srv(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    async with run_server(tmp_path_factory.mktemp("decisions") / "data") as running:
        yield running


def mask_data_url(mask: np.ndarray) -> str:
    return (
        "data:image/png;base64,"
        + base64.b64encode(encode_png(mask.astype(np.uint8) * 255)).decode()
    )


@dataclass
class Meeting:
    """A session on the module's server with a token and a user id per role."""

    server: RunningServer
    sid: str
    tokens: dict[str, str]
    users: dict[str, str]
    base: np.ndarray

    def api(self, role: str) -> ApiClient:
        return ApiClient(self.server.url, self.tokens[role])

    def client(self, role: str) -> SessionClient:
        return self.server.client(self.sid, self.tokens[role])

    def path(self, suffix: str) -> str:
        return f"/api/sessions/{self.sid}{suffix}"

    async def call(self, role: str, method: str, path: str, **kwargs: Any) -> Any:
        async with self.api(role) as api:
            return await api.json(method, path, **kwargs)

    async def session_call(self, role: str, method: str, suffix: str, **kwargs: Any) -> Any:
        async with self.api(role) as api:
            return await api.json(method, self.path(suffix), **kwargs)

    async def decide(self, role: str, layer: str, decision: str, note: str = "") -> Any:
        return await self.session_call(
            role,
            "POST",
            f"/layers/{layer}/decision",
            json={"decision": decision, "note": note},
        )

    async def upload(self, role: str, pin: str, image: bytes, box: list[int] | None = None) -> str:
        data = {"box": json.dumps(box)} if box is not None else None
        reply = await self.session_call(
            role, "POST", f"/pins/{pin}/versions", files={"image": ("v.png", image)}, data=data
        )
        return str(reply["layer"])

    def changed_copy(self, k: int, box: tuple[int, int, int, int] = (100, 80, 12, 10)) -> bytes:
        pixels = self.base.copy()
        x, y, w, h = box
        pixels[y : y + h, x : x + w] = (k * 41 % 256, 255 - k * 17 % 256, 90)
        return encode_png(pixels)

    async def audit(self) -> list[dict[str, Any]]:
        return (await self.session_call("owner", "GET", "/audit"))["events"]  # type: ignore[no-any-return]


async def meeting(server: RunningServer, title: str = "Decisions") -> Meeting:
    created = await server.admin.create_session(
        encode_png(sized("astronaut", 160, 120)), title=title
    )
    tokens = (await join_session(server.url, created)).tokens
    tokens["admin"] = ADMIN_TOKEN
    users = {"admin": "admin"}
    for role, token in tokens.items():
        async with server.api(token) as api:
            users[role] = (await api.whoami())["user_id"]
    base = decode(await server.admin.blob(created["base"]))
    return Meeting(server, created["id"], tokens, users, base)


async def drop_pin(
    m: Meeting, client: SessionClient, pin_id: str, role: str, region: list[int] | None = None
) -> None:
    client.add_pin(
        pin_id, x=30, y=30, text=f"{pin_id}: fix this", author=m.users[role], region=region
    )
    room = await m.server.services.rooms.acquire(m.sid)
    await eventually(lambda: pin_id in room.pins)


async def fix(m: Meeting, client: SessionClient, pin: str, **body: Any) -> list[str]:
    """Ask for a fix as the editor; return the new layers' ids once ``client`` has them all."""
    reply = await m.session_call("editor", "POST", f"/pins/{pin}/fix", json=body)
    layers = [f"l_{job}" for job in reply["jobs"]]
    await client.wait_for(lambda: {lay["id"] for lay in client.layers} >= set(layers), timeout=30)
    return layers


def layer(client: SessionClient, layer_id: str) -> Map:
    [found] = [lay for lay in client.layers if lay["id"] == layer_id]
    return found


def state_of(client: SessionClient, layer_id: str) -> str:
    return str(layer(client, layer_id)["state"])


async def http_error(status: int, call: Awaitable[Any]) -> ApiError:
    with pytest.raises(ApiError) as err:
        await call
    assert err.value.status == status, err.value.message
    return err.value


async def wait_state(client: SessionClient, layer_id: str, state: str) -> None:
    await client.wait_for(
        lambda: any(lay["id"] == layer_id and lay["state"] == state for lay in client.layers)
    )


async def wait_pin(client: SessionClient, pin: str, status: str) -> None:
    await client.wait_for(lambda: pin in client.pins and client.pins[pin]["status"] == status)


@in_module_loop
async def test_approve_request_changes_and_reject(srv: RunningServer) -> None:
    m = await meeting(srv)
    async with m.client("commenter") as commenter, m.client("viewer") as viewer:
        await drop_pin(m, commenter, "p", "commenter")
        versions = [await m.upload("editor", "p", m.changed_copy(k)) for k in range(3)]
        await viewer.wait_for(lambda: len(viewer.layers) == 3)
        assert all(state_of(viewer, v) == "pending" for v in versions)
        first, second, third = versions
        approver = m.users["approver"]

        reply = await m.decide("approver", first, "approve")
        assert reply["layer"]["id"] == first and reply["layer"]["state"] == "approved"
        assert reply["layer"]["decisions"][approver]["decision"] == "approve"
        reply = await m.decide("approver", second, "request_changes", "warmer, and keep the grain")
        assert reply["layer"]["state"] == "changes_requested"
        reply = await m.decide("approver", third, "reject", "wrong direction")
        assert reply["layer"]["state"] == "rejected"

        await wait_state(viewer, third, "rejected")
        assert state_of(viewer, first) == "approved"
        assert state_of(viewer, second) == "changes_requested"
        recorded = layer(viewer, second)["decisions"].to_py()
        assert set(recorded) == {approver}
        assert recorded[approver]["decision"] == "request_changes"
        assert recorded[approver]["note"] == "warmer, and keep the grain"
        assert isinstance(recorded[approver]["at"], float)
        assert viewer.state() == commenter.state()


@in_module_loop
async def test_a_later_decision_replaces_the_earlier_and_both_are_audited(
    srv: RunningServer,
) -> None:
    m = await meeting(srv)
    async with m.client("commenter") as commenter:
        await drop_pin(m, commenter, "p", "commenter")
        version = await m.upload("editor", "p", m.changed_copy(1))
        await m.decide("approver", version, "approve", "lovely")
        await wait_pin(commenter, "p", "resolved")
        reply = await m.decide("approver", version, "reject", "on second thought, no")
        assert reply["layer"]["state"] == "rejected"
        approver = m.users["approver"]
        assert set(reply["layer"]["decisions"]) == {approver}
        assert reply["layer"]["decisions"][approver]["decision"] == "reject"
        await wait_state(commenter, version, "rejected")
        assert layer(commenter, version)["decisions"].to_py()[approver]["note"] == (
            "on second thought, no"
        )
        # The only approval is gone: the pin is open again.
        await wait_pin(commenter, "p", "open")
    events = [e for e in await m.audit() if e["action"] == "layer.decision"]
    assert [(e["actor"], e["target"], e["detail"]["decision"]) for e in events] == [
        (approver, version, "approve"),
        (approver, version, "reject"),
    ]
    first, second = events
    assert first["detail"]["note"] == "lovely" and first["detail"]["replaces"] is None
    assert first["detail"]["was"] == "pending" and first["detail"]["state"] == "approved"
    assert second["detail"]["replaces"]["decision"] == "approve"
    assert second["detail"]["was"] == "approved" and second["detail"]["state"] == "rejected"
    assert first["at"] <= second["at"]


@in_module_loop
async def test_the_least_favourable_decision_wins(srv: RunningServer) -> None:
    m = await meeting(srv)
    async with m.client("viewer") as viewer, m.client("commenter") as commenter:
        await drop_pin(m, commenter, "p", "commenter")
        version = await m.upload("editor", "p", m.changed_copy(2))
        steps = [
            ("approver", "approve", "approved"),
            ("owner", "request_changes", "changes_requested"),
            ("admin", "reject", "rejected"),
            ("approver", "approve", "rejected"),  # the same approval again changes nothing
            ("admin", "approve", "changes_requested"),  # the rejection is replaced
            ("owner", "approve", "approved"),
        ]
        for role, decision, state in steps:
            reply = await m.decide(role, version, decision)
            assert reply["layer"]["state"] == state, (role, decision)
            await wait_state(viewer, version, state)
        decisions = layer(viewer, version)["decisions"].to_py()
        assert {user: d["decision"] for user, d in decisions.items()} == {
            m.users["approver"]: "approve",
            m.users["owner"]: "approve",
            "admin": "approve",
        }
    events = [e for e in await m.audit() if e["action"] == "layer.decision"]
    assert len(events) == len(steps)


@in_module_loop
async def test_approved_only_with_the_required_number_of_approvals(srv: RunningServer) -> None:
    m = await meeting(srv)
    for bad in (0, 21, "2", True, None, 1.5):
        await http_error(
            400, m.session_call("owner", "PATCH", "/settings", json={"required_approvals": bad})
        )
    reply = await m.session_call("owner", "PATCH", "/settings", json={"required_approvals": 2})
    assert reply["id"] == m.sid and reply["required_approvals"] == 2
    assert (await m.session_call("viewer", "GET", ""))["required_approvals"] == 2
    async with m.client("commenter") as commenter:
        await drop_pin(m, commenter, "p", "commenter")
        version = await m.upload("editor", "p", m.changed_copy(3))
        assert (await m.decide("approver", version, "approve"))["layer"]["state"] == "pending"
        await commenter.wait_for(lambda: layer(commenter, version)["decisions"].to_py())
        assert state_of(commenter, version) == "pending"
        assert commenter.pins["p"]["status"] == "open"
        assert (await m.decide("owner", version, "approve"))["layer"]["state"] == "approved"
        await wait_state(commenter, version, "approved")
        await wait_pin(commenter, "p", "resolved")
    settings_events = [e for e in await m.audit() if e["action"] == "session.update"]
    assert [e["detail"] for e in settings_events] == [{"required_approvals": 2}]


@in_module_loop
async def test_changing_required_approvals_rederives_states(srv: RunningServer) -> None:
    m = await meeting(srv)
    await m.session_call("owner", "PATCH", "/settings", json={"required_approvals": 2})
    async with m.client("commenter") as commenter:
        await drop_pin(m, commenter, "p", "commenter")
        version = await m.upload("editor", "p", m.changed_copy(4))
        assert (await m.decide("approver", version, "approve"))["layer"]["state"] == "pending"
        reply = await m.session_call("owner", "PATCH", "/settings", json={"required_approvals": 1})
        assert reply["changed"] == [{"layer": version, "state": "approved"}]
        await wait_state(commenter, version, "approved")
        await wait_pin(commenter, "p", "resolved")
        # A version on a resolved pin is refused, like a fix: reopen the pin first.
        await http_error(409, m.upload("editor", "p", m.changed_copy(5)))


@in_module_loop
async def test_approving_a_fix_resolves_its_pin_for_everyone(srv: RunningServer) -> None:
    m = await meeting(srv)
    async with (
        m.client("commenter") as commenter,
        m.client("editor") as editor,
        m.client("viewer") as viewer,
        m.client("approver") as approver,
    ):
        everyone = (commenter, editor, viewer, approver)
        await drop_pin(m, commenter, "p", "commenter", region=[40, 30, 30, 24])
        # Two rounds (fix requests) on one pin, each approved.
        [a] = await fix(m, viewer, "p", prompt="plain suit", seed=3, variants=1, steps=4)
        [b] = await fix(m, viewer, "p", prompt="plainer suit", seed=4, variants=1, steps=4)
        await m.decide("approver", a, "approve")
        for client in everyone:
            await wait_pin(client, "p", "resolved")
        # A second approved version: withdrawing one approval leaves the pin resolved.
        await m.decide("approver", b, "approve")
        await m.decide("approver", a, "request_changes", "the collar is off")
        for client in everyone:
            await wait_state(client, a, "changes_requested")
            assert client.pins["p"]["status"] == "resolved"
        # Withdrawing the last approval reopens it, for everyone.
        await m.decide("approver", b, "reject")
        for client in everyone:
            await wait_pin(client, "p", "open")
        assert commenter.state() == viewer.state() == editor.state() == approver.state()


@in_module_loop
async def test_variants_of_one_fix_are_one_round_and_approving_one_supersedes_the_rest(
    srv: RunningServer,
) -> None:
    m = await meeting(srv)
    async with m.client("commenter") as commenter, m.client("viewer") as viewer:
        await drop_pin(m, commenter, "p", "commenter", region=[40, 30, 30, 24])
        a, b, c = await fix(m, viewer, "p", prompt="plain suit", variants=3, steps=2)
        [other] = await fix(m, viewer, "p", prompt="another round", variants=1, steps=2)
        rounds = {lay["id"]: lay["fix"] for lay in viewer.layers}
        assert rounds[a] == rounds[b] == rounds[c] != rounds[other]
        await m.decide("approver", c, "reject", "too dark")
        reply = await m.decide("approver", b, "approve", "this one")
        # Its undecided sibling leaves "waiting for review"; the rejected one stays rejected;
        # the other round is not a sibling.
        assert reply["variants"] == [{"id": a, "state": "superseded"}]
        await wait_state(viewer, a, "superseded")
        assert [state_of(viewer, v) for v in (a, b, c, other)] == [
            "superseded",
            "approved",
            "rejected",
            "pending",
        ]
        # A superseded variant cannot be approved while its sibling is.
        err = await http_error(409, m.decide("owner", a, "approve"))
        assert b in err.message and "withdraw" in err.message
        assert state_of(viewer, a) == "superseded"
        # Withdrawing the approval puts the siblings back up for review, for everyone.
        await m.decide("approver", b, "request_changes", "on second thought, the collar")
        await wait_state(viewer, a, "pending")
        await m.decide("owner", a, "approve")
        await wait_state(viewer, a, "approved")
        await wait_state(viewer, b, "changes_requested")
        # Every change is in the audit log with the decision that caused it.
        decided = [e for e in await m.audit() if e["action"] == "layer.decision"]
        by_layer = {(e["target"], e["detail"]["decision"]): e["detail"] for e in decided}
        assert by_layer[(b, "approve")]["variants"] == [
            {"layer": a, "state": "superseded", "previous_state": "pending"}
        ]
        assert by_layer[(b, "request_changes")]["variants"] == [
            {"layer": a, "state": "pending", "previous_state": "superseded"}
        ]


@in_module_loop
async def test_lowering_required_approvals_keeps_the_first_approved_variant(
    srv: RunningServer,
) -> None:
    m = await meeting(srv)
    await m.session_call("owner", "PATCH", "/settings", json={"required_approvals": 2})
    async with m.client("commenter") as commenter, m.client("viewer") as viewer:
        await drop_pin(m, commenter, "p", "commenter", region=[40, 30, 30, 24])
        a, b = await fix(m, viewer, "p", variants=2, steps=2)
        # One approval each: neither is approved yet, both still wait for review.
        for version in (b, a):
            assert (await m.decide("approver", version, "approve"))["layer"]["state"] == "pending"
        reply = await m.session_call("owner", "PATCH", "/settings", json={"required_approvals": 1})
        # Both would be approved now: the first variant is kept, its sibling superseded.
        assert sorted(reply["changed"], key=lambda c: c["layer"] != a) == [
            {"layer": a, "state": "approved"},
            {"layer": b, "state": "superseded"},
        ]
        await wait_state(viewer, b, "superseded")
        assert state_of(viewer, a) == "approved"


@in_module_loop
async def test_roles_that_may_not_decide_are_refused(srv: RunningServer) -> None:
    m = await meeting(srv)
    other = await meeting(srv, "Another")
    async with m.client("commenter") as commenter:
        await drop_pin(m, commenter, "p", "commenter")
        version = await m.upload("editor", "p", m.changed_copy(4))
        for role in ("viewer", "commenter", "editor"):
            err = await http_error(403, m.decide(role, version, "approve"))
            assert err.code == "forbidden"
        async with other.api("owner") as api:
            await http_error(
                403,
                api.json(
                    "POST", m.path(f"/layers/{version}/decision"), json={"decision": "approve"}
                ),
            )
        await m.decide("approver", version, "request_changes", "a barrier")
        await wait_state(commenter, version, "changes_requested")
        assert set(layer(commenter, version)["decisions"].to_py()) == {m.users["approver"]}
    events = [e for e in await m.audit() if e["action"] == "layer.decision"]
    assert [e["actor"] for e in events] == [m.users["approver"]]


@in_module_loop
async def test_a_layer_of_another_session_is_not_found(srv: RunningServer) -> None:
    mine, theirs = await meeting(srv, "Mine"), await meeting(srv, "Theirs")
    async with theirs.client("commenter") as commenter:
        await drop_pin(theirs, commenter, "p", "commenter", region=[10, 10, 20, 20])
        uploaded = await theirs.upload("editor", "p", theirs.changed_copy(5))
        [inpainted] = await fix(theirs, commenter, "p", variants=1, steps=2)
        for layer_id in (uploaded, inpainted):
            for role in ("approver", "owner", "admin"):
                err = await http_error(404, mine.decide(role, layer_id, "approve"))
                assert err.code == "not_found"
        assert state_of(commenter, uploaded) == state_of(commenter, inpainted) == "pending"
        assert layer(commenter, inpainted)["decisions"].to_py() == {}


@in_module_loop
async def test_unknown_ids_are_not_found(srv: RunningServer) -> None:
    m = await meeting(srv)
    async with m.client("commenter") as commenter:
        await drop_pin(m, commenter, "p", "commenter", region=[10, 10, 20, 20])
    await http_error(404, m.decide("approver", "l_nope", "approve"))
    await http_error(404, m.decide("approver", "l_j_000000000000", "approve"))
    await http_error(404, m.decide("approver", "nope", "approve"))
    await http_error(404, m.session_call("editor", "POST", "/pins/nope/fix", json={}))
    await http_error(
        404,
        m.session_call(
            "editor", "POST", "/pins/nope/versions", files={"image": ("v.png", m.changed_copy(6))}
        ),
    )
    await http_error(404, m.call("editor", "POST", "/api/jobs/j_nope/cancel"))
    await http_error(404, m.call("viewer", "GET", "/api/jobs/j_nope"))
    await http_error(404, m.session_call("owner", "DELETE", "/invites/nope"))
    # The admin token reaches every session, and learns which ones do not exist.
    gone = "/api/sessions/0000000000000000"
    for method, suffix, kwargs in (
        ("GET", "", {}),
        ("POST", "/layers/l_x/decision", {"json": {"decision": "approve"}}),
        ("POST", "/pins/p/fix", {"json": {"region": [1, 1, 4, 4]}}),
        ("PUT", "/locks", {"json": {"locks": []}}),
        ("PATCH", "/settings", {"json": {"required_approvals": 1}}),
        ("GET", "/export.png", {}),
        ("GET", "/export.json", {}),
        ("GET", "/audit", {}),
        ("GET", "/invites", {}),
        ("POST", "/invites", {"json": {"role": "viewer", "name": "x"}}),
    ):
        await http_error(404, m.call("admin", method, gone + suffix, **kwargs))
    await http_error(404, m.call("admin", "GET", "/blobs/" + "0" * 64))


@in_module_loop
async def test_decisions_on_jobs_that_left_no_version_conflict(srv: RunningServer) -> None:
    m = await meeting(srv)
    services = srv.services
    worker = services.worker
    assert worker is not None
    async with m.client("editor") as editor:
        await drop_pin(m, editor, "p", "editor", region=[20, 20, 30, 30])
        # Hold the worker's device: the first job waits on it, the others stay queued.
        async with worker.device:
            reply = await m.session_call(
                "editor", "POST", "/pins/p/fix", json={"variants": 3, "steps": 2}
            )
            first, second, third = reply["jobs"]
            await editor.wait_for(lambda: {first, second, third} <= set(editor.jobs))
            err = await http_error(409, m.decide("approver", f"l_{second}", "approve"))
            assert "not finished" in err.message
            cancelled = await m.call("editor", "POST", f"/api/jobs/{second}/cancel")
            assert cancelled["status"] == "cancelled"
            # A job that fails: another worker takes it and gives up on it.
            await editor.wait_for(lambda: editor.jobs[first]["status"] == "running")
            claimed = await services.queue.claim("test-worker", 30)
            assert claimed is not None and claimed.id == third
            failed = await services.queue.fail(third, "test-worker", "out of memory", retry=False)
            assert failed is not None
            await services.fixes.runner.stopped(failed)
            await editor.wait_for(lambda: editor.jobs[third]["status"] == "failed")
            assert editor.jobs[second]["status"] == "cancelled"
        for job, word in ((second, "cancelled"), (third, "failed")):
            err = await http_error(409, m.decide("approver", f"l_{job}", "approve"))
            assert err.code == "conflict" and word in err.message
        await editor.wait_for(lambda: editor.jobs[first]["status"] == "done", timeout=30)
        assert [lay["id"] for lay in editor.layers] == [f"l_{first}"]
        assert (await m.decide("approver", f"l_{first}", "approve"))["layer"]["state"] == (
            "approved"
        )


@in_module_loop
async def test_bad_decision_bodies_are_refused(srv: RunningServer) -> None:
    m = await meeting(srv)
    async with m.client("commenter") as commenter:
        await drop_pin(m, commenter, "p", "commenter")
        version = await m.upload("editor", "p", m.changed_copy(7))
        path = m.path(f"/layers/{version}/decision")
        bodies: list[dict[str, Any]] = [
            {"decision": "maybe"},
            {"decision": "APPROVE"},
            {},
            {"decision": None},
            {"decision": "approve", "note": "x" * (MAX_NOTE_CHARS + 1)},
            {"decision": "approve", "note": 5},
            {"decision": "approve", "note": ["a"]},
        ]
        async with m.api("approver") as api:
            for body in bodies:
                await http_error(400, api.json("POST", path, json=body))
            await http_error(400, api.json("POST", path, content=b"{not json"))
            await http_error(400, api.json("POST", path, json=["approve"]))
            longest = "y" * MAX_NOTE_CHARS
            reply = await api.json("POST", path, json={"decision": "reject", "note": longest})
        assert reply["layer"]["state"] == "rejected"
        await wait_state(commenter, version, "rejected")
    events = [e for e in await m.audit() if e["action"] == "layer.decision"]
    assert [e["detail"]["note"] for e in events] == [longest]


@in_module_loop
async def test_a_fix_on_a_resolved_pin_conflicts(srv: RunningServer) -> None:
    m = await meeting(srv)
    async with m.client("commenter") as commenter, m.client("editor") as editor:
        await drop_pin(m, commenter, "p", "commenter", region=[10, 10, 20, 20])
        commenter.pins["p"]["status"] = "resolved"
        await wait_pin(editor, "p", "resolved")
        fix_p = ("editor", "POST", "/pins/p/fix")
        err = await http_error(409, m.session_call(*fix_p, json={"variants": 1}))
        assert err.code == "conflict"
        assert len(editor.jobs) == 0
        commenter.pins["p"]["status"] = "open"
        await wait_pin(editor, "p", "open")
        [version] = await fix(m, editor, "p", variants=1, steps=2)
        # Resolved by approving its fix: no further fix until someone reopens it.
        await m.decide("approver", version, "approve")
        await wait_pin(editor, "p", "resolved")
        await http_error(409, m.session_call(*fix_p, json={"variants": 1}))
        assert len(editor.jobs) == 1


@in_module_loop
async def test_locks_refuse_a_mask_entirely_inside_them(srv: RunningServer) -> None:
    m = await meeting(srv)
    async with m.client("commenter") as commenter, m.client("viewer") as viewer:
        for bad in ([[150, 100, 20, 30]], [[0, 0, 0, 5]], "all", [[1, 2, 3]]):
            await http_error(400, m.session_call("owner", "PUT", "/locks", json={"locks": bad}))
        reply = await m.session_call("owner", "PUT", "/locks", json={"locks": [[0, 0, 80, 60]]})
        assert reply == {"locks": [[0, 0, 80, 60]]}
        await viewer.wait_for(lambda: viewer.meta["locks"].to_py() == [[0, 0, 80, 60]])
        await drop_pin(m, commenter, "p", "commenter", region=[10, 10, 30, 30])
        for body in (
            {},  # the pin's region
            {"region": [70, 50, 10, 10]},
            {"mask": mask_data_url(np.pad(np.ones((20, 20), bool), ((5, 95), (5, 135))))},
        ):
            err = await http_error(400, m.session_call("editor", "POST", "/pins/p/fix", json=body))
            assert "lock" in err.message
        assert len(viewer.jobs) == 0
        # Across the lock's edge: only the part outside may change.
        [version] = await fix(m, viewer, "p", region=[60, 40, 40, 40], variants=1, steps=2)
        fixed = layer(viewer, version)
        x, y, _w, _h = (int(v) for v in fixed["box"])
        async with m.api("viewer") as api:
            patch = decode(await api.blob(fixed["patch"]), "RGBA")
        assert x >= 80 or y >= 60 or not patch[: max(0, 60 - y), : max(0, 80 - x), 3].any()
        assert patch[..., 3].any()
        locks = [e for e in await m.audit() if e["action"] == "session.locks"]
        assert [e["detail"]["locks"] for e in locks] == [[[0, 0, 80, 60]]]


@in_module_loop
async def test_uploads_must_match_the_base_or_their_box(srv: RunningServer) -> None:
    m = await meeting(srv)
    async with m.client("commenter") as commenter, m.client("viewer") as viewer:
        await drop_pin(m, commenter, "p", "commenter")
        wrong_size = encode_png(sized("astronaut", 100, 75))
        err = await http_error(400, m.upload("editor", "p", wrong_size))
        assert "160x120" in err.message
        patch = np.full((20, 30, 3), (10, 200, 60), np.uint8)
        await http_error(400, m.upload("editor", "p", encode_png(patch), box=[5, 5, 20, 20]))
        await http_error(400, m.upload("editor", "p", encode_png(patch), box=[150, 110, 30, 20]))
        await http_error(400, m.upload("editor", "p", encode_png(patch), box=[5, 5, 30]))
        await http_error(400, m.upload("editor", "p", encode_png(m.base)))  # nothing changed
        await http_error(415, m.upload("editor", "p", b"not an image at all"))
        assert len(viewer.layers) == 0
        version = await m.upload("editor", "p", encode_png(patch), box=[5, 7, 30, 20])
        await viewer.wait_for(lambda: len(viewer.layers) == 1)
        made = layer(viewer, version)
        assert [int(v) for v in made["box"]] == [5, 7, 30, 20]
        assert made["source"] == "upload" and made["author"] == m.users["editor"]
        assert made["state"] == "pending" and list(viewer.pins["p"]["layers"]) == [version]
        async with m.api("viewer") as api:
            stored = decode(await api.blob(made["patch"]), "RGBA")
        assert np.array_equal(stored[..., :3], patch) and (stored[..., 3] == 255).all()


# -- export ---------------------------------------------------------------------------------


def composite(image: np.ndarray, patch: np.ndarray, box: list[float]) -> np.ndarray:
    """An RGBA patch over ``image`` at ``box``: alpha 0 keeps the pixel, otherwise the
    float32 mix ``rint(under * (1 - a) + over * a)`` (the compositing rule of the engines)."""
    x, y, w, h = (int(v) for v in box)
    assert patch.shape[:2] == (h, w)
    out = image.copy()
    under = image[y : y + h, x : x + w].astype(np.float32)
    a = patch[..., 3:4].astype(np.float32) / np.float32(255)
    mixed = np.clip(np.rint(under * (np.float32(1) - a) + patch[..., :3] * a), 0, 255)
    out[y : y + h, x : x + w] = np.where(patch[..., 3:4] == 0, under, mixed).astype(np.uint8)
    return out


@in_module_loop
async def test_export_flattens_the_approved_layers_with_their_provenance(
    srv: RunningServer,
) -> None:
    m = await meeting(srv, "Export me")
    async with m.client("commenter") as commenter, m.client("owner") as owner:
        # Nothing approved yet: the base itself, and no generation parameters.
        async with m.api("owner") as api:
            plain = (await api.request("GET", m.path("/export.png"))).content
        with Image.open(io.BytesIO(plain)) as img:
            assert "parameters" not in img.text
            assert json.loads(img.text["proofroom"])["layers"] == []
        assert np.array_equal(decode(plain), m.base)

        await drop_pin(m, commenter, "suit", "commenter", region=[30, 30, 40, 30])
        await drop_pin(m, commenter, "sky", "commenter")
        variants = await fix(
            m, owner, "suit", prompt="a clean white suit", seed=500, variants=3, steps=6
        )
        by_variant = {int(layer(owner, v)["params"]["variant"]): v for v in variants}
        chosen, refused, undecided = by_variant[0], by_variant[1], by_variant[2]
        await m.decide("approver", chosen, "approve", "that one")
        await m.decide("approver", refused, "reject")
        # A retouched patch over part of the chosen fix, approved after it: it goes on top.
        patch = np.full((20, 30, 3), (240, 220, 10), np.uint8)
        retouch = await m.upload("editor", "sky", encode_png(patch), box=[60, 50, 30, 20])
        rejected_retouch = await m.upload(
            "editor", "sky", encode_png(255 - patch), box=[0, 0, 30, 20]
        )
        await m.decide("owner", retouch, "approve")
        await m.decide("owner", rejected_retouch, "reject")
        await wait_state(owner, rejected_retouch, "rejected")
        assert state_of(owner, undecided) == "superseded"  # a sibling was approved

        async with m.api("owner") as api:
            response = await api.request("GET", m.path("/export.png"))
            sidecar = await api.json("GET", m.path("/export.json"))
            expected = m.base
            for approved in (chosen, retouch):
                made = layer(owner, approved)
                patch_rgba = decode(await api.blob(made["patch"]), "RGBA")
                expected = composite(expected, patch_rgba, list(made["box"]))
        assert response.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(response.content)) as img:
            assert img.format == "PNG" and img.size == (160, 120)
            text = dict(img.text)
            pixels = np.asarray(img.convert("RGB"))
        assert np.array_equal(pixels, expected)
        assert not np.array_equal(pixels, m.base)

        # A1111 style: the prompt, then one line of "Key: value" pairs.
        prompt_line, settings_line = text["parameters"].split("\n")
        assert prompt_line == "a clean white suit"
        fields = dict(pair.split(": ", 1) for pair in settings_line.split(", "))
        assert fields["Steps"] == "6" and fields["Seed"] == "500"
        assert fields["Size"] == "160x120" and fields["Denoising strength"] == "1.0"
        assert fields["Model"] and fields["Version"].startswith("Proofroom")
        assert text["Software"].startswith("Proofroom") and text["Title"] == "Export me"

        info = json.loads(text["proofroom"])
        assert info == sidecar
        assert info["session"] == m.sid and info["size"] == [160, 120]
        assert info["base"] == owner.meta["base"]
        assert [lay["id"] for lay in info["layers"]] == [chosen, retouch]
        generated, retouched = info["layers"]
        decisions = layer(owner, chosen)["decisions"].to_py()
        assert generated["prompt"] == "a clean white suit" and generated["engine"] == "classical"
        # Integers stay integers (pycrdt reads every number as a float: convert at the edge).
        assert (generated["seed"], generated["steps"]) == (500, 6)
        assert type(generated["seed"]) is int and type(generated["steps"]) is int
        assert generated["box"] == list(map(int, layer(owner, chosen)["box"]))
        assert all(type(v) is int for v in generated["box"] + retouched["box"])
        assert generated["model"] == layer(owner, chosen)["params"]["method"]
        assert generated["author"] == m.users["editor"] and generated["pin"] == "suit"
        assert generated["approved_by"] == [m.users["approver"]]
        assert generated["approved_at"] == decisions[m.users["approver"]]["at"]
        assert generated["source"] == "inpaint"
        assert retouched["source"] == "upload" and retouched["author"] == m.users["editor"]
        assert retouched["approved_by"] == [m.users["owner"]]
        assert retouched["prompt"] is None and retouched["pin"] == "sky"
    exports = [e for e in await m.audit() if e["action"] == "session.export"]
    assert [e["detail"]["layers"] for e in exports] == [[], [chosen, retouch]]
