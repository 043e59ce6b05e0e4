"""The pages and the bundle route, over HTTP (no browser needed)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest

from proofroom.server.web import pages
from proofroom.shared import schema
from proofroom.shared.export_json import contract

from .. import requires
from ..helpers import RunningServer


async def test_pages_carry_a_strict_csp_and_no_inline_script(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for path in ("/", "/s/abc123"):
            reply = await http.get(path)
            assert reply.status_code == 200
            csp = reply.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
            assert reply.headers["referrer-policy"] == "no-referrer"
            # Every script is a file: none is inline, and no user data is in the page.
            assert not re.search(r"<script(?![^>]*\bsrc=)", reply.text)


async def test_a_missing_bundle_is_explained(
    server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(pages, "BUNDLE_DIR", tmp_path / "nothing")
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/s/abc123")
        assert page.status_code == 200 and "scripts/build_web.py" in page.text
        assert "<script" not in page.text
    with caplog.at_level(logging.WARNING):
        pages.check_bundle()
    assert "scripts/build_web.py" in caplog.text


async def test_the_bundle_route_without_a_bundle(server: RunningServer, tmp_path: Path) -> None:
    missing = pages.BundleFiles(tmp_path / "nothing")
    transport = httpx.ASGITransport(app=missing)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        reply = await http.get("/review.js")
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_built"


async def test_the_built_bundle_is_served_with_cache_headers(server: RunningServer) -> None:
    if pages.bundle_version() is None:
        requires.missing("the browser bundle is not built: run scripts/build_web.py")
    async with httpx.AsyncClient(base_url=server.url) as http:
        plain = await http.get("/static/review.js")
        versioned = await http.get(f"/static/review.js?v={pages.bundle_version()}")
        built_contract = await http.get("/static/contract.json")
    assert plain.status_code == 200 and plain.headers["cache-control"] == "no-cache"
    assert "immutable" in versioned.headers["cache-control"]
    assert plain.headers["x-content-type-options"] == "nosniff"
    # The contract the bundle embeds is the one proofroom/shared defines now.
    assert built_contract.json() == contract(), "the bundle is stale: run scripts/build_web.py"


def test_the_contract_names_what_the_document_uses() -> None:
    exported = contract()
    assert exported["roots"]["PINS"] == schema.PINS
    assert exported["fields"]["Pin"]["REGION"] == schema.Pin.REGION
    assert exported["permissions"]["viewer"] == ["view"]
    assert 4401 in exported["protocol"]["permanent_close_codes"]
