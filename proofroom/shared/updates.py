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

from dataclasses import dataclass, field

from .codec import MalformedMessage, Reader

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


@dataclass(slots=True)
class UpdateShape:
    """What an update contains, as far as its bytes alone tell."""

    #: Per client: (first clock, end clock) of the structs it carries.
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    roots: list[RootWrite] = field(default_factory=list)
    nested: list[NestedWrite] = field(default_factory=list)
    #: Shared types it creates: id -> type reference.
    types: dict[ID, int] = field(default_factory=dict)
    #: Ids of existing items it refers to (left and right origins, parents by id).
    refs: set[ID] = field(default_factory=set)
    #: Deleted ranges: (client, clock, length).
    deletes: list[tuple[int, int, int]] = field(default_factory=list)
    #: Shared types other than maps and arrays, and sub-documents (by name).
    unsupported: set[str] = field(default_factory=set)


def read_update(update: bytes) -> UpdateShape:
    """Read an update's shape; raise MalformedMessage if it is not a valid v1 update."""
    reader = Reader(update)
    shape = UpdateShape()
    try:
        for _ in range(_count(reader)):
            structs = _count(reader)
            client = reader.var_uint()
            clock = start = reader.var_uint()
            for _ in range(structs):
                clock += _read_struct(reader, shape, client, clock)
            if structs:
                if client in shape.ranges:
                    raise MalformedMessage("an update lists one client twice")
                shape.ranges[client] = (start, clock)
        for _ in range(_count(reader)):
            client = reader.var_uint()
            for _ in range(_count(reader)):
                clock = reader.var_uint()
                length = reader.var_uint()
                if length:
                    shape.deletes.append((client, clock, length))
    except RecursionError:  # pragma: no cover - nesting is bounded before this
        raise MalformedMessage("update nested too deeply") from None
    if not reader.done():
        raise MalformedMessage("trailing bytes after the update")
    return shape


def _count(reader: Reader) -> int:
    """A var-uint count that the remaining bytes could possibly hold (one byte each)."""
    count = reader.var_uint()
    if count > len(reader.data) - reader.pos:
        raise MalformedMessage("truncated update")
    return count


def _read_id(reader: Reader) -> ID:
    return reader.var_uint(), reader.var_uint()


def _read_struct(reader: Reader, shape: UpdateShape, client: int, clock: int) -> int:
    """Read one struct at (client, clock); return its length in clock units."""
    info = _byte(reader)
    ref = info & _CONTENT_MASK
    if ref == _GC or ref == _SKIP:
        return _positive(reader.var_uint())
    origin = _read_id(reader) if info & _HAS_ORIGIN else None
    right = _read_id(reader) if info & _HAS_RIGHT_ORIGIN else None
    if origin is not None:
        shape.refs.add(origin)
    if right is not None:
        shape.refs.add(right)
    if origin is None and right is None:
        # Placed by its parent: a root by name, or a shared type by id.
        is_root = reader.var_uint()
        if is_root == 1:
            root: str | None = reader.var_string()
            parent: ID | None = None
        elif is_root == 0:
            root, parent = None, _read_id(reader)
            shape.refs.add(parent)
        else:
            raise MalformedMessage("invalid parent in update")
        key = reader.var_string() if info & _HAS_PARENT_SUB else None
        if root is not None:
            shape.roots.append(RootWrite(root, key))
        elif parent is not None:
            shape.nested.append(NestedWrite(parent, key))
    return _read_content(reader, shape, ref, (client, clock))


def _read_content(reader: Reader, shape: UpdateShape, ref: int, item_id: ID) -> int:
    if ref == _DELETED:
        return _positive(reader.var_uint())
    if ref == _JSON:
        count = _positive(_count(reader))
        for _ in range(count):
            reader.var_string()
        return count
    if ref == _BINARY:
        reader.var_bytes()
        return 1
    if ref == _STRING:
        text = reader.var_string()
        # Clocks count UTF-16 code units, as in Yjs.
        units = len(text.encode("utf-16-le")) // 2
        return _positive(units)
    if ref == _EMBED:
        reader.var_string()
        return 1
    if ref == _FORMAT:
        reader.var_string()
        reader.var_string()
        return 1
    if ref == _TYPE:
        type_ref = reader.var_uint()
        if type_ref in (3, 5):  # xml element / hook carry a node name
            reader.var_string()
        if type_ref not in (TYPE_ARRAY, TYPE_MAP):
            if type_ref not in TYPE_NAMES:
                raise MalformedMessage(f"unknown shared type {type_ref} in update")
            shape.unsupported.add(TYPE_NAMES[type_ref])
            if type_ref == 7:
                # A weak link's encoding is not read here; nothing after it can be trusted.
                raise MalformedMessage("weak links are not supported")
        shape.types[item_id] = type_ref
        return 1
    if ref == _ANY:
        count = _positive(_count(reader))
        for _ in range(count):
            _skip_any(reader)
        return count
    if ref == _DOC:
        reader.var_string()
        _skip_any(reader)
        shape.unsupported.add("sub-document")
        return 1
    raise MalformedMessage(f"unknown content type {ref} in update")


def _skip_any(reader: Reader) -> None:
    """Skip one lib0 ``Any`` value, iteratively, refusing nesting beyond MAX_ANY_DEPTH."""
    # Each stack entry: values still to read at that level (objects read a key first).
    stack: list[list[int]] = [[1, 0]]  # [remaining, is_object]
    while stack:
        top = stack[-1]
        if top[0] == 0:
            stack.pop()
            continue
        top[0] -= 1
        if top[1]:
            reader.var_string()  # the key
        tag = _byte(reader)
        if tag in (127, 126, 121, 120):  # undefined, null, false, true
            continue
        if tag == 125:
            _skip_var_int(reader)
        elif tag == 124:
            _skip_bytes(reader, 4)
        elif tag in (123, 122):
            _skip_bytes(reader, 8)
        elif tag == 119:
            reader.var_string()
        elif tag == 116:
            reader.var_bytes()
        elif tag in (118, 117):
            if len(stack) >= MAX_ANY_DEPTH:
                raise MalformedMessage(f"values nested deeper than {MAX_ANY_DEPTH} levels")
            stack.append([_count(reader), 1 if tag == 118 else 0])
        else:
            raise MalformedMessage(f"unknown value tag {tag} in update")


def _skip_var_int(reader: Reader) -> None:
    first = _byte(reader)
    if first & 0x80:
        reader.var_uint()


def _skip_bytes(reader: Reader, count: int) -> None:
    if reader.pos + count > len(reader.data):
        raise MalformedMessage("truncated update")
    reader.pos += count


def _byte(reader: Reader) -> int:
    if reader.pos >= len(reader.data):
        raise MalformedMessage("truncated update")
    value = reader.data[reader.pos]
    reader.pos += 1
    return value


def _positive(length: int) -> int:
    if length <= 0:
        raise MalformedMessage("a struct of length 0 in update")
    return length
