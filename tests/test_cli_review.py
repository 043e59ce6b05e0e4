"""``proofroom status`` and ``proofroom export`` as subprocesses against a served server."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from pathlib import Path

from PIL import Image

from proofroom.client import ApiClient, ApiError, SessionClient

from .helpers import ADMIN_TOKEN, join_session, png_bytes
from .procs import ServerProcess
from .review_steps import decide, put_pin, upload_version
from .test_cli import assert_clean_error, cli


async def review(url: str) -> tuple[str, str, dict[str, str]]:
    """Two sessions; the first gets a pin with an approved version. Their ids, and tokens."""
    async with ApiClient(url, ADMIN_TOKEN) as admin:
        poster = await admin.create_session(png_bytes(64, 48), title="Poster for status")
        other = await admin.create_session(png_bytes(64, 48), title="Untouched one")
        tokens = (await join_session(url, poster)).tokens
        async with ApiClient(url, tokens["editor"]) as edit:
            editor = (await edit.whoami())["user_id"]
            async with SessionClient(url, poster["id"], tokens["editor"]) as doc:
                await put_pin(doc, "p1", editor, poster["created_at"])
            deadline = time.monotonic() + 30
            while True:  # the pin reaches the server's document a moment later
                try:
                    layer = await upload_version(edit, poster["id"], "p1", (0, 90, 0))
                    break
                except ApiError as err:
                    assert err.status == 404 and time.monotonic() < deadline, err
                    await asyncio.sleep(0.02)
        async with ApiClient(url, tokens["approver"]) as approver:
            await decide(approver, poster["id"], layer, "approve")
        deadline = time.monotonic() + 30
        while (await admin.producer(state="approved"))["totals"]["sessions"] != 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    return poster["id"], other["id"], tokens


async def test_status_and_export(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data") as srv:
        await srv.astart()
        poster, other, tokens = await review(srv.url)
        where = ("--server", srv.url, "--token", ADMIN_TOKEN)

        def run(*args: str, cwd: Path | None = None) -> str:
            result = cli(*args, cwd=cwd)
            assert result.returncode == 0, result.stderr
            assert result.stderr == ""
            return result.stdout

        table = (await asyncio.to_thread(run, "status", *where)).splitlines()
        assert table[0].split() == [
            "TITLE",
            "ID",
            "PEND",
            "APPR",
            "CHG",
            "REJ",
            "OPEN",
            "PINS",
            "ROUNDS/PIN",
            "TO",
            "APPROVAL",
            "IN",
            "REVIEW",
        ]
        row = rf"^Poster for status\s+{poster}\s+0\s+1\s+0\s+0\s+0\s+1\.0\s+\d+s\s+\d+s$"
        assert any(re.match(row, line) for line in table), table
        untouched = rf"^Untouched one\s+{other}\s+0\s+0\s+0\s+0\s+0\s+-\s+-\s+\S+"
        assert any(re.match(untouched, line) for line in table), table
        assert table[-1].startswith("TOTAL (2 sessions)")

        only = (await asyncio.to_thread(run, "status", "--state", "approved", *where)).splitlines()
        assert any(poster in line for line in only) and not any(other in line for line in only)

        body = json.loads(await asyncio.to_thread(run, "status", "--json", "-q", "poster", *where))
        [figures] = body["sessions"]
        assert figures["id"] == poster and figures["versions"]["approved"] == 1

        # Export with the session's owner token; the PNG and its sidecar land side by side.
        out = tmp_path / "out" / "final.png"
        out.parent.mkdir()
        owner = ("--server", srv.url, "--token", tokens["owner"])
        printed = await asyncio.to_thread(run, "export", poster, "-o", str(out), *owner)
        assert str(out) in printed
        sidecar = json.loads((tmp_path / "out" / "final.json").read_text())
        assert sidecar["session"] == poster and len(sidecar["layers"]) == 1
        with Image.open(io.BytesIO(out.read_bytes())) as img:
            assert img.size == (64, 48)
            assert json.loads(img.text["proofroom"]) == sidecar
            assert img.convert("RGB").getpixel((3, 3)) == (0, 90, 0)
        # Default file name, in the working directory; the admin token works too.
        await asyncio.to_thread(run, "export", poster, *where, cwd=tmp_path)
        assert (tmp_path / f"proofroom-{poster}.png").exists()
        assert (tmp_path / f"proofroom-{poster}.json").exists()

        # Clean one-line errors.
        viewer = ("--server", srv.url, "--token", tokens["viewer"])
        failed = await asyncio.to_thread(cli, "status", *viewer)
        assert "403" in assert_clean_error(failed)
        failed = await asyncio.to_thread(cli, "export", poster, "-o", str(out), *viewer)
        assert "403" in assert_clean_error(failed)
        failed = await asyncio.to_thread(cli, "export", "no-such-session", *where)
        assert "404" in assert_clean_error(failed)
