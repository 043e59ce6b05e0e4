"""Every endpoint answers bad input with a 4xx JSON error, and the server stays up.

Issue 10 items 8 and 9: deeply nested JSON was a RecursionError (500) on invites, fix,
decision, locks and settings; a mask PNG claiming 30000x30000 was a DecompressionBombError;
a long ``q`` on the producer's view was SQLite's "LIKE or GLOB pattern too complex"; and
unknown fields were silently ignored. One real server serves the module; each case is
sent raw (httpx, exact bytes) and then a normal request checks that the server still works.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio

from proofroom.client.api import token_from_url
from proofroom.server.bodies import MAX_DEPTH
from proofroom.server.review.producer_view import MAX_Q_CHARS
from proofroom.server.web.common import MAX_JSON_BYTES

from .helpers import ADMIN_TOKEN, RunningServer, png_bytes, run_server
from .review_steps import upload_version, wait_for_pin

#: The async tests share the module's event loop, where its one server runs.
in_module_loop = pytest.mark.asyncio(loop_scope="module")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSON = {"Content-Type": "application/json"}
WIDTH, HEIGHT = 64, 48
#: Far beyond the recursion limit: what made ``json.loads`` raise RecursionError.
DEEP = 100_000


# -- the world: a session with a pin that has a region, one without, and one with a layer ---


@dataclass
class World:
    server: RunningServer
    http: httpx.AsyncClient
    sid: str
    layer: str
    #: Share-link token of the session's viewer link (the bearer of ``POST /api/join``).
    link: str
    names: dict[str, str] = field(default_factory=dict)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with run_server(tmp_path_factory.mktemp("bad_input") / "data") as server:
        created = await server.admin.create_session(png_bytes(WIDTH, HEIGHT), title="Fuzz")
        sid = created["id"]
        me = (await server.admin.whoami())["user_id"]
        async with server.client(sid, ADMIN_TOKEN) as doc:
            doc.add_pin("p_region", x=6, y=6, text="fix", author=me, region=[4, 4, 8, 8])
            doc.add_pin("p_bare", x=9, y=9, text="no region", author=me)
            # Approving resolves a pin: the decisions get a pin of their own.
            doc.add_pin("p_decide", x=12, y=12, text="decide", author=me)
            await doc.flush()
        for pin in ("p_region", "p_bare", "p_decide"):
            await wait_for_pin(server, sid, pin)
        layer = await upload_version(server.admin, sid, "p_decide", (10, 200, 10))
        link = token_from_url(created["links"]["viewer"])
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            yield World(server, http, sid, layer, link)


async def assert_4xx(world: World, response: httpx.Response, case: object) -> dict[str, str]:
    """A JSON error ``{error: {code, message}}`` with a 4xx status; the server still serves."""
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), (case, response)
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, (case, body)
    assert body["error"]["code"] and isinstance(body["error"]["code"], str), (case, body)
    assert body["error"]["message"] and isinstance(body["error"]["message"], str), (case, body)
    assert "Traceback" not in response.text
    # Messages quote a bad value at most briefly.
    assert len(body["error"]["message"]) < 1000, (case, body["error"]["message"][:200])
    health = await world.http.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    error: dict[str, str] = body["error"]
    return error


# -- the JSON endpoints --------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One JSON endpoint: a body it accepts, and per field values it must refuse."""

    name: str
    method: str
    path: str
    valid: dict[str, Any]
    wrong: dict[str, list[Any]]
    #: ``admin`` or ``link`` (the viewer link's token).
    bearer: str = "admin"
    #: Where an empty body is incomplete (a fix on a pin with a region needs no body).
    empty_path: str | None = None

    def url(self, world: World, path: str | None = None) -> str:
        return (path or self.path).format(sid=world.sid, layer=world.layer)

    def headers(self, world: World) -> dict[str, str]:
        token = ADMIN_TOKEN if self.bearer == "admin" else world.link
        return {"Authorization": f"Bearer {token}", **JSON}


NOT_TEXT: list[Any] = [1, 2.5, True, [], ["x"], {}, {"x": "y"}]
NOT_INT: list[Any] = ["1", 1.5, True, [], {}, [1]]

ENDPOINTS = [
    Endpoint(
        "invite",
        "POST",
        "/api/sessions/{sid}/invites",
        {"role": "viewer", "name": "Guest", "expires_in": 3600},
        {
            "role": [None, "superuser", "", *NOT_TEXT],
            "name": [None, "", "   ", "n" * 81, "n" * 500_000, *NOT_TEXT],
            "expires_in": ["3600", True, [], {}, -1, 0, 10**12, 1e308],
            "kind": ["bogus", "", *NOT_TEXT],
        },
    ),
    Endpoint(
        "fix",
        "POST",
        "/api/sessions/{sid}/pins/p_region/fix",
        {"seed": 1, "variants": 1, "steps": 1},
        {
            "region": ["x", 1, True, {}, [1, 2], [[1, 2, 3, 4]], [0, 0, 0, 0], [60, 40, 8, 8]],
            "mask": [
                1,
                True,
                [],
                {},
                "not a data url",
                "data:image/png;base64,!!!",
                "0" * 64,
            ],
            "prompt": ["p" * 5000, "p" * 500_000, *NOT_TEXT],
            "negative_prompt": ["p" * 5000, *NOT_TEXT],
            "seed": [-1, 2**32, 10**30, *NOT_INT],
            "steps": [0, 151, 1e308, *NOT_INT],
            "strength": [0, -0.5, 1.5, "1", True, [], {}],
            "guidance": [-1, 31, "7.5", True, [], {}],
            "variants": [0, 9, *NOT_INT],
            "priority": [-11, 11, *NOT_INT],
            "engine": ["gemini", "no-such-engine", "", *NOT_TEXT],
            "model": NOT_TEXT,
        },
        empty_path="/api/sessions/{sid}/pins/p_bare/fix",
    ),
    Endpoint(
        "decision",
        "POST",
        "/api/sessions/{sid}/layers/{layer}/decision",
        {"decision": "approve", "note": "looks right"},
        {
            "decision": [None, "yes", "", *NOT_TEXT],
            "note": ["n" * 2001, "n" * 500_000, *NOT_TEXT],
        },
    ),
    Endpoint(
        "locks",
        "PUT",
        "/api/sessions/{sid}/locks",
        {"locks": []},
        {
            "locks": [
                None,
                1,
                "x",
                {},
                True,
                [1],
                ["x"],
                [[0, 0, 0, 0]],
                [[-1, 0, 4, 4]],
                [["a", 0, 4, 4]],
                [[0, 0, 4]],
                [[0, 0, 4, 4, 4]],
                [[0, 0, 4, 4]] * 65,
                [[0, 0, 1e308, 4]],
                [[0, 0, 4, 4], [{"x": 1}]],
            ]
        },
    ),
    Endpoint(
        "settings",
        "PATCH",
        "/api/sessions/{sid}/settings",
        {"required_approvals": 1},
        {"required_approvals": [None, 0, 21, 1.0, 1e308, -(10**30), *NOT_INT]},
    ),
    Endpoint(
        "join",
        "POST",
        "/api/join",
        {"name": "Guest", "email": "guest@example.com"},
        {
            "name": [None, "", "   ", "n" * 81, "n" * 500_000, *NOT_TEXT],
            "email": NOT_TEXT,
        },
        bearer="link",
    ),
]
BY_NAME = {e.name: e for e in ENDPOINTS}


def raw(value: Any) -> bytes:
    return json.dumps(value).encode()


def with_field(endpoint: Endpoint, name: str, text: str | bytes) -> bytes:
    """The endpoint's valid body with one field's JSON replaced by ``text``, byte for byte."""
    body = raw({**endpoint.valid, name: "\0"})
    return body.replace(b'"\\u0000"', text if isinstance(text, bytes) else text.encode())


def deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def generic_bodies(endpoint: Endpoint) -> Iterator[tuple[str, bytes]]:
    """Bad bodies every JSON endpoint must refuse, whatever its fields."""
    first = next(iter(endpoint.valid))
    yield "deep array", deep_array(DEEP).encode()
    yield "deep object", deep_object(DEEP).encode()
    yield "deep array in a field", with_field(endpoint, first, deep_array(DEEP))
    yield "deep object in a field", with_field(endpoint, first, deep_object(DEEP))
    yield "one level too deep", with_field(endpoint, first, deep_array(MAX_DEPTH))
    yield "a list", raw([endpoint.valid])
    yield "a string", b'"viewer"'
    yield "a number", b"42"
    yield "null", b"null"
    yield "true", b"true"
    yield "cut short", raw(endpoint.valid)[:-3]
    yield "trailing comma", raw(endpoint.valid)[:-1] + b",}"
    yield "not JSON", b"role=viewer&name=x"
    yield "invalid UTF-8", with_field(endpoint, first, b'"\xff\xfe"')
    yield "UTF-8 BOM", b"\xef\xbb\xbf" + raw(endpoint.valid)
    yield "UTF-16", json.dumps(endpoint.valid).encode("utf-16")
    yield "lone surrogate", with_field(endpoint, first, '"\\ud800"')
    yield "a 5000-digit integer", with_field(endpoint, first, "9" * 5000)
    yield "too large", raw({**endpoint.valid, first: "x" * (MAX_JSON_BYTES + 10)})
    for number in ("NaN", "Infinity", "-Infinity", "1e400"):
        for name in endpoint.valid:
            yield f"{name}={number}", with_field(endpoint, name, number)


def cases(kind: str) -> list[Any]:
    out = []
    for endpoint in ENDPOINTS:
        if kind == "generic":
            for label, body in generic_bodies(endpoint):
                out.append(pytest.param(endpoint.name, body, id=f"{endpoint.name}-{label}"))
        else:
            for name, values in endpoint.wrong.items():
                for n, value in enumerate(values):
                    label = f"{endpoint.name}-{name}-{n}-{type(value).__name__}"
                    out.append(pytest.param(endpoint.name, name, value, id=label))
    return out


@in_module_loop
@pytest.mark.parametrize("name", list(BY_NAME))
async def test_the_valid_body_is_accepted(world: World, name: str) -> None:
    """Each endpoint's valid body works, so a refused variant is refused for its one change."""
    endpoint = BY_NAME[name]
    response = await world.http.request(
        endpoint.method,
        endpoint.url(world),
        headers=endpoint.headers(world),
        content=raw(endpoint.valid),
    )
    assert 200 <= response.status_code < 300, response.text


@in_module_loop
@pytest.mark.parametrize(("name", "body"), cases("generic"))
async def test_malformed_bodies_are_4xx(world: World, name: str, body: bytes) -> None:
    endpoint = BY_NAME[name]
    response = await world.http.request(
        endpoint.method, endpoint.url(world), headers=endpoint.headers(world), content=body
    )
    error = await assert_4xx(world, response, body[:80])
    if b"[[[[" in body or b'{"a":{"a":' in body:
        assert response.status_code == 400 and "nests deeper" in error["message"], error


@in_module_loop
@pytest.mark.parametrize(("name", "key", "value"), cases("wrong"))
async def test_wrong_values_are_4xx(world: World, name: str, key: str, value: Any) -> None:
    endpoint = BY_NAME[name]
    response = await world.http.request(
        endpoint.method,
        endpoint.url(world),
        headers=endpoint.headers(world),
        content=raw({**endpoint.valid, key: value}),
    )
    error = await assert_4xx(world, response, (key, str(value)[:80]))
    if isinstance(value, str) and len(value) > 1000:
        assert response.status_code in (400, 413), error


@in_module_loop
@pytest.mark.parametrize("name", list(BY_NAME))
async def test_an_unknown_field_is_refused_naming_the_allowed_ones(world: World, name: str) -> None:
    endpoint = BY_NAME[name]
    for extra in ({"bogus": 1}, {"Role": "viewer"}, {"": None}):
        response = await world.http.request(
            endpoint.method,
            endpoint.url(world),
            headers=endpoint.headers(world),
            content=raw({**endpoint.valid, **extra}),
        )
        error = await assert_4xx(world, response, extra)
        assert response.status_code == 400 and error["code"] == "unknown_field", error
        assert repr(next(iter(extra))) in error["message"], error
        for allowed in endpoint.valid:
            assert allowed in error["message"], error


@in_module_loop
@pytest.mark.parametrize("name", list(BY_NAME))
async def test_an_empty_body_is_4xx(world: World, name: str) -> None:
    endpoint = BY_NAME[name]
    for body in (b"", b"{}", b"  \n"):
        response = await world.http.request(
            endpoint.method,
            endpoint.url(world, endpoint.empty_path),
            headers=endpoint.headers(world),
            content=body,
        )
        await assert_4xx(world, response, body)


# -- the reader itself ----------------------------------------------------------------------


def test_the_depth_limit_is_exact_and_ignores_brackets_in_strings() -> None:
    from proofroom.server.bodies import parse_json
    from proofroom.shared.errors import BadRequest

    assert parse_json(deep_array(MAX_DEPTH).encode()) is not None
    with pytest.raises(BadRequest, match="nests deeper than 32"):
        parse_json(deep_array(MAX_DEPTH + 1).encode())
    # Brackets inside strings, escaped quotes included, are text, not nesting.
    text = '\\"[' * 1000 + "{\\\\" * 1000
    assert parse_json(raw({"a": [text]})) == {"a": [text]}
    assert parse_json(raw([[text] * 3] * 3)) == [[text] * 3] * 3


# -- images: uploads and masks --------------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def bomb_png(width: int = 30_000, height: int = 30_000, mode: int = 0) -> bytes:
    """A valid ~100-byte PNG whose IHDR claims ``width`` x ``height`` (8-bit grey by default).

    Its IDAT holds one row only: a decoder that trusted the header would allocate the whole
    claimed image first (900 MB for the default), which is what a bomb is.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 65))
        + png_chunk(b"IEND", b"")
    )


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


GOOD_MASK = png_bytes(WIDTH, HEIGHT, (255, 255, 255))

MASKS = {
    "bomb 30000x30000": bomb_png(),
    "bomb 100000x100000": bomb_png(100_000, 100_000),
    "bomb with the session's width": bomb_png(WIDTH, 10_000_000),
    "truncated PNG": GOOD_MASK[: len(GOOD_MASK) // 2],
    "PNG header only": GOOD_MASK[:33],
    "not an image": b"hello, world",
    "a JPEG": png_bytes(WIDTH, HEIGHT, (255, 255, 255), fmt="JPEG"),
    "wrong size": png_bytes(WIDTH + 1, HEIGHT, (255, 255, 255)),
    "empty": b"",
}


@in_module_loop
@pytest.mark.parametrize("label", list(MASKS))
async def test_bad_masks_are_4xx(world: World, label: str) -> None:
    response = await world.http.post(
        f"/api/sessions/{world.sid}/pins/p_region/fix",
        headers={**ADMIN, **JSON},
        content=raw({"mask": data_url(MASKS[label]), "seed": 1}),
    )
    error = await assert_4xx(world, response, label)
    if label.startswith("bomb"):
        assert response.status_code in (400, 413), error
        assert "x" in error["message"], error  # it says what size the mask claims


async def test_a_bomb_mask_is_refused_before_pillow_sees_it() -> None:
    """The declared size is checked first, so Pillow's own bomb error or warning never fires.

    Under ``filterwarnings = error`` a DecompressionBombWarning would be an exception too: the
    PNG below is over Pillow's warning threshold but under its error one.
    """
    from proofroom.server.review.masks import decode_mask_png
    from proofroom.shared.errors import BadRequest

    with pytest.raises(BadRequest, match="10000x10000; it must be 64x48"):
        decode_mask_png(bomb_png(10_000, 10_000), WIDTH, HEIGHT)


def multipart_cases() -> Iterator[Any]:
    good = png_bytes(WIDTH, HEIGHT, (1, 2, 3))
    for path in ("/api/sessions", "/api/sessions/{sid}/pins/p_region/versions"):
        kind = "session" if path == "/api/sessions" else "version"
        uploads: dict[str, dict[str, Any]] = {
            "no image part": {"data": {"title": "x"}},
            "image as text": {"data": {"image": "abc"}},
            "empty image": {"files": {"image": ("i.png", b"")}},
            "not an image": {"files": {"image": ("i.png", b"hello, world")}},
            "truncated PNG": {"files": {"image": ("i.png", good[: len(good) // 2])}},
            "PNG header only": {"files": {"image": ("i.png", good[:33])}},
            "bomb 30000x30000": {"files": {"image": ("i.png", bomb_png(mode=2))}},
            "bomb 100000x100000": {"files": {"image": ("i.png", bomb_png(100_000, 100_000))}},
            # Between Pillow's warning and error thresholds: with filterwarnings=error, a
            # DecompressionBombWarning that escaped would be a 500 here.
            "bomb 10000x10000": {"files": {"image": ("i.png", bomb_png(10_000, 10_000))}},
            "a GIF": {"files": {"image": ("i.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")}},
            "not multipart": {"json": {"image": "abc"}},
        }
        if kind == "session":
            uploads["title as a file"] = {
                "files": {"image": ("i.png", good), "title": ("t.txt", b"x")}
            }
        else:
            boxes = {
                "box deeply nested": "[" * 60_000 + "]" * 60_000,
                "box NaN": "[NaN, 0, 4, 4]",
                "box 1e400": "[1e400, 0, 4, 4]",
                "box short": "[1, 2]",
                "box not JSON": "x" * 100,
                "box outside": "[60, 40, 64, 48]",
                "box object": '{"x": 1}',
                "box too long": "[" + " " * 300 + "0, 0, 64, 48]",
            }
            for label, box in boxes.items():
                uploads[label] = {"files": {"image": ("i.png", good)}, "data": {"box": box}}
            uploads["box as a file"] = {
                "files": {"image": ("i.png", good), "box": ("b.json", b"[0, 0, 64, 48]")}
            }
        for label, kwargs in uploads.items():
            yield pytest.param(path, kwargs, id=f"{kind}-{label}")


@in_module_loop
@pytest.mark.parametrize(("path", "kwargs"), list(multipart_cases()))
async def test_bad_uploads_are_4xx(world: World, path: str, kwargs: dict[str, Any]) -> None:
    response = await world.http.post(path.format(sid=world.sid), headers=ADMIN, **kwargs)
    error = await assert_4xx(world, response, kwargs)
    files = kwargs.get("files", {})
    if "image" in files and files["image"][1].startswith(b"\x89PNG") and len(files) == 1:
        if struct.unpack(">I", files["image"][1][16:20])[0] >= 10_000:
            assert response.status_code == 413, error


# -- query parameters -----------------------------------------------------------------------

LONG = "_" * 60_000  # escaped to 120 KB of LIKE pattern: over SQLite's 50,000-byte limit

QUERIES = [
    ("/api/producer", {"q": LONG}),
    ("/api/producer", {"q": "%" * (MAX_Q_CHARS + 1)}),
    ("/api/producer", {"limit": "9" * 5000}),
    ("/api/producer", {"limit": "1e3"}),
    ("/api/producer", {"limit": "-1"}),
    ("/api/producer", {"limit": "10001"}),
    ("/api/producer", {"since": "nan"}),
    ("/api/producer", {"since": "inf"}),
    ("/api/producer", {"until": "-Infinity"}),
    ("/api/producer", {"since": "1e999"}),
    ("/api/producer", {"since": "x" * 10_000}),
    ("/api/producer", {"until": "2024-01-01T00:00:00+99:00"}),
    ("/api/producer", {"state": "x" * 10_000}),
    ("/api/producer", {"state": "open," * 5000 + "x"}),
    ("/api/producer", {"sort": "x" * 10_000}),
    ("/api/webhooks/deliveries", {"status": "x" * 10_000}),
    ("/api/events", {"types": ",".join(["job.*"] * 1000)}),
    ("/api/whoami", {"token": "x" * 10_000}),
    ("/api/jobs/" + "j" * 10_000, {}),
    ("/blobs/" + "b" * 10_000, {}),
    ("/blobs/" + "0" * 64, {}),
    ("/api/producer/sessions/" + "s" * 10_000, {}),
    ("/api/sessions/" + "s" * 10_000, {}),
    ("/api/sessions/" + "s" * 10_000 + "/audit", {}),
]


@in_module_loop
@pytest.mark.parametrize(
    ("path", "params"), [pytest.param(p, q, id=f"{p[:30]}-{list(q)}") for p, q in QUERIES]
)
async def test_bad_query_parameters_are_4xx(
    world: World, path: str, params: dict[str, str]
) -> None:
    headers = {} if "token" in params else ADMIN
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = await world.http.get(path + (f"?{query}" if query else ""), headers=headers)
    error = await assert_4xx(world, response, (path[:40], list(params)))
    if path == "/api/producer" and "q" in params:
        assert response.status_code == 400 and str(MAX_Q_CHARS) in error["message"], error


@in_module_loop
async def test_producer_search_treats_percent_and_underscore_literally(world: World) -> None:
    titles = ["100% done", "100 percent done", "a_b", "axb", "back\\slash", "backxslash"]
    made = {}
    for title in titles:
        created = await world.server.admin.create_session(png_bytes(8, 8), title=title)
        made[title] = created["id"]
    await world.server.services.producer.flush()

    async def found(q: str) -> set[str]:
        response = await world.http.get("/api/producer", params={"q": q}, headers=ADMIN)
        assert response.status_code == 200, response.text
        return {s["title"] for s in response.json()["sessions"]}

    assert await found("%") == {"100% done"}
    assert await found("0% d") == {"100% done"}
    assert await found("_") == {"a_b"}
    assert await found("a_b") == {"a_b"}
    assert await found("\\") == {"back\\slash"}
    assert await found("x" * MAX_Q_CHARS) == set()  # the limit itself is accepted
