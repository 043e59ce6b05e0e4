"""Encoding and strict decoding of y-websocket frames (var-uint framed, as y-protocols)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest
from .protocol import AuthMessage, MessageType, SyncStep


class MalformedMessage(BadRequest):
    """A frame that does not follow the protocol."""


def write_var_uint(num: int) -> bytes:
    out = bytearray()
    while num > 0x7F:
        out.append(0x80 | (num & 0x7F))
        num >>= 7
    out.append(num)
    return bytes(out)


def write_var_bytes(data: bytes) -> bytes:
    return write_var_uint(len(data)) + data


class Reader:
    """Reads var-uints and length-prefixed byte strings, raising on any truncation."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def var_uint(self) -> int:
        num = shift = 0
        while True:
            if self.pos >= len(self.data):
                raise MalformedMessage("truncated message")
            byte = self.data[self.pos]
            self.pos += 1
            num |= (byte & 0x7F) << shift
            if byte < 0x80:
                return num
            shift += 7
            if shift > 63:
                raise MalformedMessage("var-uint too long")

    def var_bytes(self) -> bytes:
        length = self.var_uint()
        end = self.pos + length
        if end > len(self.data):
            raise MalformedMessage("truncated message")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def var_string(self) -> str:
        try:
            return self.var_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage("invalid UTF-8 in message") from None

    def done(self) -> bool:
        return self.pos >= len(self.data)


@dataclass(frozen=True, slots=True)
class SyncMessage:
    step: SyncStep
    payload: bytes  # a state vector for STEP1, an update otherwise


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: dict[str, Any] | None


def parse_frame(frame: bytes, *, from_server: bool = False) -> tuple[MessageType, Any]:
    """Decode one frame into its type and content; raise MalformedMessage otherwise.

    Only the server sends AUTH messages; their content is the permission-denied reason.
    """
    reader = Reader(frame)
    raw_type = reader.var_uint()
    try:
        kind = MessageType(raw_type)
    except ValueError:
        raise MalformedMessage(f"unknown message type {raw_type}") from None
    content: Any
    if kind is MessageType.SYNC:
        raw_step = reader.var_uint()
        try:
            step = SyncStep(raw_step)
        except ValueError:
            raise MalformedMessage(f"unknown sync step {raw_step}") from None
        content = SyncMessage(step, reader.var_bytes())
    elif kind is MessageType.AWARENESS:
        content = parse_awareness(reader.var_bytes())
    elif kind is MessageType.AUTH:
        if not from_server:
            raise MalformedMessage("clients may not send auth messages")
        if reader.var_uint() != AuthMessage.PERMISSION_DENIED:
            raise MalformedMessage("unknown auth message")
        content = reader.var_string()
    else:
        content = None
    return kind, content


def parse_awareness(update: bytes) -> list[AwarenessEntry]:
    reader = Reader(update)
    count = reader.var_uint()
    if count > 10_000:
        raise MalformedMessage("too many awareness entries")
    entries = []
    for _ in range(count):
        client_id = reader.var_uint()
        clock = reader.var_uint()
        text = reader.var_string()
        try:
            state = json.loads(text) if text else None
        except ValueError:
            raise MalformedMessage("awareness state is not JSON") from None
        if state is not None and not isinstance(state, dict):
            raise MalformedMessage("awareness state must be an object or null")
        entries.append(AwarenessEntry(client_id, clock, state))
    return entries


def encode_awareness(entries: list[tuple[int, int, str]]) -> bytes:
    """An awareness message from (client_id, clock, state JSON or 'null') triples."""
    body = bytearray(write_var_uint(len(entries)))
    for client_id, clock, state_json in entries:
        body += write_var_uint(client_id) + write_var_uint(clock)
        body += write_var_bytes(state_json.encode("utf-8"))
    return write_var_uint(MessageType.AWARENESS) + write_var_bytes(bytes(body))


def sync_step1(state_vector: bytes) -> bytes:
    return bytes((MessageType.SYNC, SyncStep.STEP1)) + write_var_bytes(state_vector)


def sync_step2(update: bytes) -> bytes:
    return bytes((MessageType.SYNC, SyncStep.STEP2)) + write_var_bytes(update)


def sync_update(update: bytes) -> bytes:
    return bytes((MessageType.SYNC, SyncStep.UPDATE)) + write_var_bytes(update)


def permission_denied(reason: str) -> bytes:
    return bytes((MessageType.AUTH, AuthMessage.PERMISSION_DENIED)) + write_var_bytes(
        reason.encode("utf-8")
    )


def query_awareness() -> bytes:
    return bytes((MessageType.QUERY_AWARENESS,))


def decode_state_vector(state: bytes) -> dict[int, int]:
    """A Yjs state vector: client id -> number of structs seen from that client."""
    reader = Reader(state)
    count = reader.var_uint()
    vector = {}
    for _ in range(count):
        client = reader.var_uint()
        vector[client] = reader.var_uint()
    return vector


def read_state_vector(state: bytes) -> dict[int, int]:
    """:func:`decode_state_vector`, refusing trailing bytes and impossible counts."""
    reader = Reader(state)
    count = reader.var_uint()
    if count > len(state):
        raise MalformedMessage("truncated state vector")
    vector = {}
    for _ in range(count):
        client = reader.var_uint()
        vector[client] = reader.var_uint()
    if not reader.done():
        raise MalformedMessage("trailing bytes after the state vector")
    return vector
