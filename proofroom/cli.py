"""The ``proofroom`` command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .shared.enums import EditEngine, Role

DEFAULT_URL = "http://127.0.0.1:8000"


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get("PROOFROOM_" + name.upper(), default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="proofroom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server on its embedded defaults")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--data", type=Path, help="data directory (default ./proofroom-data)")
    serve.add_argument(
        "--engine",
        choices=["auto", *(e.value for e in EditEngine)],
        help="default edit engine of a fix request that names none (default auto)",
    )
    serve.add_argument("--model", help="diffusers inpaint model: local path or cached id")
    serve.add_argument("--log-level", default=_env("log_level", "info"))

    def client_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--server", default=_env("url", DEFAULT_URL), help="server URL (PROOFROOM_URL)"
        )
        p.add_argument(
            "--token", default=None, help="token (PROOFROOM_ADMIN_TOKEN, or the one in --data)"
        )
        p.add_argument("--data", type=Path, default=Path(_env("data", "proofroom-data")))

    create = sub.add_parser("session", help="manage review sessions")
    session_sub = create.add_subparsers(dest="action", required=True)
    make = session_sub.add_parser("create", help="create a session from an image")
    make.add_argument("image", type=Path)
    make.add_argument("--title", default="")
    client_args(make)
    listing = session_sub.add_parser("list", help="list sessions")
    client_args(listing)

    invite = sub.add_parser("invite", help="create a named invite link for a session")
    invite.add_argument("session")
    invite.add_argument("--role", required=True, choices=[r.value for r in Role])
    invite.add_argument("--name", required=True)
    invite.add_argument("--expires-in", type=float, help="seconds until the link expires")
    client_args(invite)

    status = sub.add_parser("status", help="the producer's view: every session's figures")
    status.add_argument(
        "--state",
        action="append",
        choices=["pending", "approved", "changes_requested", "rejected", "open", "done"],
        help="sessions with versions in this state (open: open pins); repeat for any of",
    )
    status.add_argument("--search", "-q", help="title contains this text")
    status.add_argument("--since", help="created at or after (Unix seconds or ISO 8601)")
    status.add_argument("--until", help="created before (Unix seconds or ISO 8601)")
    status.add_argument("--sort", help="e.g. -time_in_review, title (default -last_activity)")
    status.add_argument("--limit", type=int)
    status.add_argument("--json", action="store_true", help="print the JSON answer")
    client_args(status)

    export = sub.add_parser("export", help="download the approved result and its provenance")
    export.add_argument("session")
    export.add_argument(
        "-o", "--output", type=Path, help="PNG path (default proofroom-SESSION.png)"
    )
    client_args(export)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        serve(args)
    else:
        try:
            asyncio.run(run_client_command(args))
        except Exception as exc:  # print a clean message, not a traceback
            import httpx

            from .client.api import ApiError

            if isinstance(exc, httpx.TransportError):
                print(f"proofroom: cannot reach {args.server}: {exc}", file=sys.stderr)
                sys.exit(1)
            if isinstance(exc, ApiError | OSError):
                print(f"proofroom: {exc}", file=sys.stderr)
                sys.exit(1)
            raise


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .server.app import bind_socket, create_app, uvicorn_config
    from .server.services import ADMIN_TOKEN_FILE, Services
    from .server.settings import Settings

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env(
            host=args.host, port=args.port, data=args.data, engine=args.engine, model=args.model
        )
    except ValueError as exc:  # a bad setting (PROOFROOM_FAST_PATHS=of): a message at start
        sys.exit(f"proofroom: {exc}")
    sock = bind_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host

    def ready(services: Services) -> None:
        # What is loaded by now (modules, engines, settings) lives as long as the process:
        # keep it out of the collector's full passes, which walk every tracked object
        # (about 0.5 us each, measured) while the event loop waits.
        gc.collect()
        gc.freeze()
        print(
            f"Proofroom is running at http://{host}:{port}/?token={services.admin_token}",
            flush=True,
        )
        data = Path(settings.data).resolve()
        origin = (
            "from PROOFROOM_ADMIN_TOKEN"
            if settings.admin_token
            else f"kept in {data / ADMIN_TOKEN_FILE}; set PROOFROOM_ADMIN_TOKEN to choose one"
        )
        print(f"Data: {data}  (admin token: {origin})", flush=True)
        print(f"Engine: {services.engine.name} ({services.engine_reason})", flush=True)

    config = uvicorn_config(create_app(settings, on_ready=ready), settings)
    uvicorn.Server(config).run(sockets=[sock])


async def run_client_command(args: argparse.Namespace) -> None:
    from .client.api import ApiClient

    token = args.token or _env("admin_token") or _read_token(args.data)
    async with ApiClient(args.server, token) as api:
        if args.command == "session" and args.action == "create":
            created = await api.create_session(
                args.image.read_bytes(), title=args.title, filename=args.image.name
            )
            print(
                f"Session {created['id']}: {created['title']} "
                f"({created['width']}x{created['height']})"
            )
            for role, url in created["links"].items():
                print(f"  {role:<10} {url}")
        elif args.command == "session" and args.action == "list":
            for s in await api.list_sessions():
                print(
                    f"{s['id']}  {s['title']}  {s['width']}x{s['height']}  "
                    f"{s['participants']} online"
                )
        elif args.command == "invite":
            made = await api.create_invite(args.session, args.role, args.name, args.expires_in)
            print(json.dumps({"token": made["token"], "url": made["url"]}))
        elif args.command == "status":
            from .client.report import status_table

            body = await api.producer(
                state=",".join(args.state) if args.state else None,
                q=args.search,
                since=args.since,
                until=args.until,
                sort=args.sort,
                limit=args.limit,
            )
            print(json.dumps(body, indent=2) if args.json else status_table(body))
        elif args.command == "export":
            output = args.output or Path(f"proofroom-{args.session}.png")
            png = await api.export_png(args.session)
            sidecar = await api.export_json(args.session)
            output.write_bytes(png)
            output.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
            print(f"{output}  ({len(sidecar['layers'])} approved layers)")
            print(output.with_suffix(".json"))


def _read_token(data: Path) -> str | None:
    path = data / "admin_token"
    return path.read_text().strip() if path.exists() else None
