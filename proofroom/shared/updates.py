"""A strict reader of Yjs updates (encoding v1), for checks made before an update is applied.

The write guard decides on a client's update before the live document is touched (DESIGN.md
section 4). Most of that decision needs the document (whose pin is this?), but part of it
is the update's shape alone, and those parts are read here, without applying anything:

- which roots the update writes to directly, and whether as a map (a keyed entry) or as a
  sequence: an unknown root, or ``pins`` written as an array or text, is refused whole;
- which shared types it creates (a map or an array, nothing else) and under which parent;
- which existing items it refers to (origins, parents) and which ranges it deletes, so an
  update that depends on something the server does not hold (a gap in a client's clock, a
  change the server refused) is recognised instead of being parked as "pending" by the
  CRDT, where it could later come to life unchecked.

The reader also bounds nesting: lib0's ``Any`` values nest arbitrarily, and a deeply nested
value must be refused here rather than reach a recursive decoder.

Format (lib0 / Yjs ``UpdateEncoderV1``): var-uint number of clients; per client the number
of structs, the client id and the first clock, then the structs; then the delete set
(per client: ranges of clock and length).
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import MalformedMessage

#: Deepest ``Any`` value accepted (objects and arrays inside one another).
MAX_ANY_DEPTH = 32

# Item info bits (Yjs Item.write).
_HAS_ORIGIN = 0x80
_HAS_RIGHT_ORIGIN = 0x40
_HAS_PARENT_SUB = 0x20
_CONTENT_MASK = 0x1F

# Content references.
_GC = 0
_DELETED = 1
_JSON = 2
_BINARY = 3
_STRING = 4
_EMBED = 5
_FORMAT = 6
_TYPE = 7
_ANY = 8
_DOC = 9
_SKIP = 10

#: Shared type references (Yjs ``YArrayRefID`` ...).
TYPE_ARRAY = 0
TYPE_MAP = 1
TYPE_NAMES = {
    0: "array",
    1: "map",
    2: "text",
    3: "xml element",
    4: "xml fragment",
    5: "xml hook",
    6: "xml text",
    7: "weak link",
}

ID = tuple[int, int]


@dataclass(slots=True)
class RootWrite:
    """An item placed directly under a root."""

    root: str
    #: The map key it sets, or None for an item placed in the root's sequence.
    key: str | None


@dataclass(slots=True)
class NestedWrite:
    """An item placed under a shared type by its id (no origin to take the parent from)."""

    parent: ID
    key: str | None


class UpdateShape:
    """What an update contains, as far as its bytes alone tell."""

    __slots__ = ("deletes", "nested", "ranges", "refs", "roots", "types", "unsupported")

    def __init__(self) -> None:
        #: Per client: (first clock, end clock) of the structs it carries.
        self.ranges: dict[int, tuple[int, int]] = {}
        self.roots: list[RootWrite] = []
        self.nested: list[NestedWrite] = []
        #: Shared types it creates: id -> type reference.
        self.types: dict[ID, int] = {}
        #: Ids of existing items it refers to (left and right origins, parents by id).
        self.refs: set[ID] = set()
        #: Deleted ranges: (client, clock, length).
        self.deletes: list[tuple[int, int, int]] = []
        #: Shared types other than maps and arrays, and sub-documents (by name).
        self.unsupported: set[str] = set()


# The reader below is written for speed: every client update passes through it before the
# guard looks at anything (a pin edit is ~40 bytes; method calls per byte cost more than
# the CRDT's own apply). Each helper takes the bytes and a position and returns the value
# read and the next position.


#: Bytes at or above 0x80 (a var-uint's continuation bytes) -> 1, the others -> 0.
_CONTINUES = bytes(1 if value >= 0x80 else 0 for value in range(256))
#: Var-uints of 5 bytes or more read so far (client ids: 53-bit numbers that every update
#: repeats), by their bytes. Bounded; a plain dict is safe to share between threads.
_LONG_UINTS: dict[bytes, int] = {}
_LONG_UINTS_MAX = 1 << 16


def _uint(data: bytes, pos: int) -> tuple[int, int]:
    """A var-uint at ``pos``."""
    try:
        byte = data[pos]
    except IndexError:
        raise MalformedMessage("truncated update") from None
    if byte < 0x80:
        return byte, pos + 1
    window = data[pos : pos + 10]
    last = window.translate(_CONTINUES).find(0)
    if last < 0:
        return _long_uint(data, pos)
    if last < 4:  # clocks and lengths: not worth remembering
        return _long_uint(data, pos)
    key = window[: last + 1]
    num = _LONG_UINTS.get(key)
    if num is None:
        num, _ = _long_uint(data, pos)
        if len(_LONG_UINTS) < _LONG_UINTS_MAX:
            _LONG_UINTS[key] = num
    return num, pos + last + 1


def _long_uint(data: bytes, pos: int) -> tuple[int, int]:
    """A var-uint of more than one byte at ``pos``, read byte by byte."""
    try:
        byte = data[pos]
        num, shift = byte & 0x7F, 7
        while True:
            pos += 1
            byte = data[pos]
            num |= (byte & 0x7F) << shift
            if byte < 0x80:
                return num, pos + 1
            shift += 7
            if shift > 63:
                raise MalformedMessage("var-uint too long in update")
    except IndexError:
        raise MalformedMessage("truncated update") from None


def _count(data: bytes, pos: int) -> tuple[int, int]:
    """A var-uint count that the remaining bytes could possibly hold (one byte each)."""
    count, pos = _uint(data, pos)
    if count > len(data) - pos:
        raise MalformedMessage("truncated update")
    return count, pos


def _bytes_end(data: bytes, pos: int) -> tuple[int, int]:
    """A length-prefixed byte string at ``pos``: (its start, its end)."""
    length, pos = _uint(data, pos)
    end = pos + length
    if end > len(data):
        raise MalformedMessage("truncated update")
    return pos, end


def _string(data: bytes, pos: int) -> tuple[str, int]:
    start, end = _bytes_end(data, pos)
    try:
        return data[start:end].decode("utf-8"), end
    except UnicodeDecodeError:
        raise MalformedMessage("invalid UTF-8 in update") from None


def read_update(update: bytes) -> UpdateShape:
    """Read an update's shape; raise MalformedMessage if it is not a valid v1 update."""
    data = bytes(update)
    shape = UpdateShape()
    clients, pos = _count(data, 0)
    for _ in range(clients):
        structs, pos = _count(data, pos)
        client, pos = _uint(data, pos)
        start, pos = _uint(data, pos)
        clock = start
        for _ in range(structs):
            length, pos = _read_struct(data, pos, shape, client, clock)
            clock += length
        if structs:
            if client in shape.ranges:
                raise MalformedMessage("an update lists one client twice")
            shape.ranges[client] = (start, clock)
    clients, pos = _count(data, pos)
    for _ in range(clients):
        client, pos = _uint(data, pos)
        ranges, pos = _count(data, pos)
        for _ in range(ranges):
            clock, pos = _uint(data, pos)
            length, pos = _uint(data, pos)
            if length:
                shape.deletes.append((client, clock, length))
    if pos != len(data):
        raise MalformedMessage("trailing bytes after the update")
    return shape


def _read_struct(
    data: bytes, pos: int, shape: UpdateShape, client: int, clock: int
) -> tuple[int, int]:
    """Read one struct at (client, clock); return its length in clock units, and ``pos``."""
    try:
        info = data[pos]
    except IndexError:
        raise MalformedMessage("truncated update") from None
    pos += 1
    ref = info & _CONTENT_MASK
    if ref == _GC or ref == _SKIP:
        length, pos = _uint(data, pos)
        return _positive(length), pos
    has_origin = info & _HAS_ORIGIN
    has_right = info & _HAS_RIGHT_ORIGIN
    if has_origin:
        c, pos = _uint(data, pos)
        k, pos = _uint(data, pos)
        shape.refs.add((c, k))
    if has_right:
        c, pos = _uint(data, pos)
        k, pos = _uint(data, pos)
        shape.refs.add((c, k))
    if not has_origin and not has_right:
        # Placed by its parent: a root by name, or a shared type by id.
        is_root, pos = _uint(data, pos)
        root: str | None = None
        parent: ID | None = None
        if is_root == 1:
            root, pos = _string(data, pos)
        elif is_root == 0:
            c, pos = _uint(data, pos)
            k, pos = _uint(data, pos)
            parent = (c, k)
            shape.refs.add(parent)
        else:
            raise MalformedMessage("invalid parent in update")
        key: str | None = None
        if info & _HAS_PARENT_SUB:
            key, pos = _string(data, pos)
        if root is not None:
            shape.roots.append(RootWrite(root, key))
        elif parent is not None:
            shape.nested.append(NestedWrite(parent, key))
    return _read_content(data, pos, shape, ref, (client, clock))


def _read_content(
    data: bytes, pos: int, shape: UpdateShape, ref: int, item_id: ID
) -> tuple[int, int]:
    if ref == _ANY:
        count, pos = _count(data, pos)
        for _ in range(count):
            pos = _skip_any(data, pos)
        return _positive(count), pos
    if ref == _STRING:
        text, pos = _string(data, pos)
        # Clocks count UTF-16 code units, as in Yjs.
        return _positive(len(text.encode("utf-16-le")) // 2), pos
    if ref == _DELETED:
        length, pos = _uint(data, pos)
        return _positive(length), pos
    if ref == _TYPE:
        type_ref, pos = _uint(data, pos)
        if type_ref in (3, 5):  # xml element / hook carry a node name
            _, pos = _bytes_end(data, pos)
        if type_ref not in (TYPE_ARRAY, TYPE_MAP):
            if type_ref not in TYPE_NAMES:
                raise MalformedMessage(f"unknown shared type {type_ref} in update")
            if type_ref == 7:
                # A weak link's encoding is not read here; nothing after it can be trusted.
                raise MalformedMessage("weak links are not supported")
            shape.unsupported.add(TYPE_NAMES[type_ref])
        shape.types[item_id] = type_ref
        return 1, pos
    if ref == _JSON:
        count, pos = _count(data, pos)
        for _ in range(count):
            _, pos = _bytes_end(data, pos)
        return _positive(count), pos
    if ref in (_BINARY, _EMBED):
        _, pos = _bytes_end(data, pos)
        return 1, pos
    if ref == _FORMAT:
        _, pos = _bytes_end(data, pos)
        _, pos = _bytes_end(data, pos)
        return 1, pos
    if ref == _DOC:
        _, pos = _bytes_end(data, pos)
        pos = _skip_any(data, pos)
        shape.unsupported.add("sub-document")
        return 1, pos
    raise MalformedMessage(f"unknown content type {ref} in update")


def _skip_any(data: bytes, pos: int) -> int:
    """Skip one lib0 ``Any`` value, iteratively, refusing nesting beyond MAX_ANY_DEPTH."""
    # Values still to read at each open level, and whether that level is an object.
    remaining = [1]
    is_object = [False]
    end = len(data)
    while remaining:
        if remaining[-1] == 0:
            remaining.pop()
            is_object.pop()
            continue
        remaining[-1] -= 1
        if is_object[-1]:
            _, pos = _bytes_end(data, pos)  # the key
        if pos >= end:
            raise MalformedMessage("truncated update")
        tag = data[pos]
        pos += 1
        if tag in (127, 126, 121, 120):  # undefined, null, false, true
            continue
        if tag == 119 or tag == 116:  # string, bytes
            _, pos = _bytes_end(data, pos)
        elif tag == 125:  # var-int: a first byte with a sign bit, then var-uint bytes
            if pos >= end:
                raise MalformedMessage("truncated update")
            first = data[pos]
            pos += 1
            if first & 0x80:
                _, pos = _uint(data, pos)
        elif tag == 124 or tag == 123 or tag == 122:  # float32, float64, bigint
            pos += 4 if tag == 124 else 8
            if pos > end:
                raise MalformedMessage("truncated update")
        elif tag == 118 or tag == 117:  # object, array
            if len(remaining) >= MAX_ANY_DEPTH:
                raise MalformedMessage(f"values nested deeper than {MAX_ANY_DEPTH} levels")
            count, pos = _count(data, pos)
            remaining.append(count)
            is_object.append(tag == 118)
        else:
            raise MalformedMessage(f"unknown value tag {tag} in update")
    return pos


def _positive(length: int) -> int:
    if length <= 0:
        raise MalformedMessage("a struct of length 0 in update")
    return length
