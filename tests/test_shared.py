"""The contract in proofroom.shared: enums, state machines, permissions, errors, codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proofroom.shared import codec, errors
from proofroom.shared.enums import (
    JOB_TRANSITIONS,
    PIN_TRANSITIONS,
    JobStatus,
    PinStatus,
    Role,
    can_transition,
)
from proofroom.shared.permissions import PERMISSIONS, Action, allows, can_write_doc
from proofroom.shared.protocol import CloseCode

EXPECTED = {  # DESIGN.md section 5, row by row
    Action.VIEW: {"viewer", "commenter", "editor", "approver", "owner"},
    Action.COMMENT: {"commenter", "editor", "approver", "owner"},
    Action.EDIT: {"editor", "owner"},
    Action.DECIDE: {"approver", "owner"},
    Action.ADMINISTER: {"owner"},
}


@pytest.mark.parametrize("action", list(Action))
def test_permission_table_matches_the_design(action: Action) -> None:
    assert {r.value for r in Role if allows(r, action)} == EXPECTED[action]


def test_only_viewers_cannot_write_the_document() -> None:
    assert [r for r in Role if not can_write_doc(r)] == [Role.VIEWER]
    assert set(PERMISSIONS) == set(Role)


def test_state_machines() -> None:
    assert can_transition(PIN_TRANSITIONS, PinStatus.OPEN, PinStatus.RESOLVED)
    assert can_transition(PIN_TRANSITIONS, PinStatus.RESOLVED, PinStatus.OPEN)
    assert not can_transition(JOB_TRANSITIONS, JobStatus.DONE, JobStatus.RUNNING)
    assert not can_transition(JOB_TRANSITIONS, JobStatus.CANCELLED, JobStatus.DONE)
    assert can_transition(JOB_TRANSITIONS, JobStatus.RUNNING, JobStatus.QUEUED)
    for status in JobStatus:
        assert status in JOB_TRANSITIONS


@pytest.mark.parametrize(
    ("error", "status", "close"),
    [
        (errors.BadRequest, 400, CloseCode.BAD_MESSAGE),
        (errors.Unauthorized, 401, CloseCode.UNAUTHORIZED),
        (errors.Forbidden, 403, CloseCode.FORBIDDEN),
        (errors.NotFound, 404, CloseCode.NOT_FOUND),
        (errors.PayloadTooLarge, 413, CloseCode.MESSAGE_TOO_BIG),
        (errors.DocumentTooLarge, 413, CloseCode.DOC_TOO_LARGE),
        (errors.UnsupportedMediaType, 415, CloseCode.BAD_MESSAGE),
        (errors.RateLimited, 429, CloseCode.RATE_LIMITED),
        (errors.RoomFull, 503, CloseCode.ROOM_FULL),
    ],
)
def test_each_error_knows_its_status_and_close_code(
    error: type[errors.ProofroomError], status: int, close: int
) -> None:
    exc = error("why")
    assert (exc.status, exc.close_code) == (status, close)
    assert exc.to_json() == {"error": {"code": exc.code, "message": "why"}}


@given(st.binary(max_size=64))
def test_parse_frame_never_fails_other_than_malformed(frame: bytes) -> None:
    try:
        codec.parse_frame(frame)
    except codec.MalformedMessage:
        pass


@given(st.integers(0, 2**53), st.binary(max_size=300))
def test_codec_round_trips(number: int, payload: bytes) -> None:
    reader = codec.Reader(codec.write_var_uint(number) + codec.write_var_bytes(payload))
    assert reader.var_uint() == number
    assert reader.var_bytes() == payload
    assert reader.done()
    _kind, message = codec.parse_frame(codec.sync_update(payload))
    assert message.payload == payload
