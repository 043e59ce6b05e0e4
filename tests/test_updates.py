"""The strict update reader the guard trusts (proofroom/shared/updates.py).

It must read every update pycrdt (or Yjs) writes exactly as the CRDT will integrate it, and
refuse anything else with MalformedMessage, never another exception.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from proofroom.shared.codec import MalformedMessage, decode_state_vector
from proofroom.shared.updates import TYPE_ARRAY, TYPE_MAP, read_update

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)

ops = st.lists(
    st.tuples(
        st.sampled_from(["set", "nested", "append", "delete", "text"]), st.text(max_size=6), values
    ),
    min_size=1,
    max_size=25,
)


def _apply(doc: Doc[Any], op: tuple[str, str, Any]) -> None:
    kind, key, value = op
    pins = doc.get("pins", type=Map)
    layers = doc.get("layers", type=Array)
    if kind == "set":
        pins[key] = value
    elif kind == "nested":
        pins[key] = Map({"v": value, "thread": Array([Map({"x": value})])})
    elif kind == "append":
        layers.append(value)
    elif kind == "delete" and key in pins:
        del pins[key]
    elif kind == "text":  # a root of text, and a text inside a pin (refused by the guard)
        doc.get("notes", type=Text).insert(0, key + "\u00e9\U0001f600")
        pins[key + "t"] = Map({"t": Text("\U0001f600" + key)})


@settings(max_examples=150, deadline=None)
@given(ops=ops)
def test_every_update_pycrdt_writes_is_read_with_its_exact_clock_ranges(
    ops: list[tuple[str, str, Any]],
) -> None:
    doc: Doc[Any] = Doc()
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    for op in ops:
        _apply(doc, op)
    del subscription
    clock = 0
    for update in updates:
        shape = read_update(update)
        for _client, (start, end) in shape.ranges.items():
            assert start == clock  # one writer: each update continues where the last ended
            clock = end
        for kind in shape.types.values():
            assert kind in (TYPE_MAP, TYPE_ARRAY) or "text" in shape.unsupported
    full = read_update(doc.get_update())
    assert {c: end for c, (_s, end) in full.ranges.items()} == decode_state_vector(doc.get_state())
    assert all(write.root in ("pins", "layers", "notes") for write in full.roots)
    if any(op[0] == "text" for op in ops):
        assert "text" in full.unsupported


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_are_read_or_refused_never_crash(data: bytes) -> None:
    try:
        read_update(data)
    except MalformedMessage:
        pass


@settings(max_examples=200, deadline=None)
@given(ops=ops, cut=st.integers(0, 10_000), flip=st.integers(0, 10_000))
def test_damaged_real_updates_are_read_or_refused_never_crash(
    ops: list[tuple[str, str, Any]], cut: int, flip: int
) -> None:
    doc: Doc[Any] = Doc()
    for op in ops:
        _apply(doc, op)
    update = bytearray(doc.get_update())
    update[flip % len(update)] ^= 0x5A
    for damaged in (bytes(update), bytes(update[: cut % len(update)])):
        try:
            read_update(damaged)
        except MalformedMessage:
            pass


def test_nesting_is_bounded_without_recursion() -> None:
    from proofroom.shared.codec import write_var_bytes, write_var_uint

    deep = bytes([117, 1]) * 1_000_000 + bytes([126])
    item = bytes([0x28]) + write_var_uint(1) + write_var_bytes(b"pins") + write_var_bytes(b"k")
    update = write_var_uint(1) + write_var_uint(1) + write_var_uint(5) + write_var_uint(0)
    update += item + write_var_uint(1) + deep + write_var_uint(0)
    try:
        read_update(update)
    except MalformedMessage as exc:
        assert "nested deeper" in exc.message
    else:
        raise AssertionError("a value nested a million deep was accepted")
