"""``softsensor serve``: the service under uvicorn, with the HTTP limits the server needs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from service.cli.arguments import Subcommands, add_registry_option, positive_float, positive_int

if TYPE_CHECKING:
    from pydantic import ValidationError


def add_serve_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the registry's champion models over HTTP (uvicorn)",
        description="Settings not given here come from SOFTSENSOR_* environment variables.",
    )
    add_registry_option(p)
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=positive_int, default=None, help="port (default 8000)")
    p.add_argument("--workers", type=positive_int, default=None, help="processes (default 1)")
    p.add_argument("--state-dir", type=Path, default=None, help="lab-result store directory")
    p.add_argument(
        "--opcua",
        metavar="ENDPOINT",
        default=None,
        help="also serve the estimates as OPC UA variables on ENDPOINT "
        "(opc.tcp://host:port/path; one worker)",
    )
    p.add_argument(
        "--opcua-stale-after",
        metavar="SECONDS",
        type=positive_float,
        default=None,
        help="an OPC UA stream silent this long turns BadNoCommunication (default 30)",
    )
    p.set_defaults(handler=run_serve, parser=p)


def run_serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import uvicorn
    from pydantic import ValidationError

    from service.api.http_protocol import GuardedHttpToolsProtocol
    from service.settings import Settings

    # Workers are separate processes: pass the command-line settings through the environment.
    overrides = {
        "registry": args.registry,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "state_dir": args.state_dir,
        "opcua_endpoint": args.opcua,
        "opcua_stale_after_s": args.opcua_stale_after,
    }
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"SOFTSENSOR_{key.upper()}"] = str(value)
    try:
        settings = Settings()
    except ValidationError as exc:
        parser.error(_settings_problem(exc))
    uvicorn.run(
        "service.api.asgi:create",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="info",
        access_log=False,
        http=GuardedHttpToolsProtocol,  # header size limit, header and body read timeouts
        timeout_keep_alive=settings.keep_alive_s,
    )
    return 0


def _settings_problem(exc: ValidationError) -> str:
    """A settings error as one line naming the setting: ``opcua_endpoint: String should...``."""
    parts = [
        f"{'.'.join(str(x) for x in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
    ]
    return "; ".join(parts)
