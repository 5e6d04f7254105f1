"""``softsensor serve``: the service under uvicorn, with the HTTP limits the server needs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from service.cli.arguments import Subcommands, add_registry_option, positive_int


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
    p.set_defaults(handler=run_serve, parser=p)


def run_serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import uvicorn

    from service.api.http_protocol import GuardedHttpToolsProtocol
    from service.settings import Settings

    # Workers are separate processes: pass the command-line settings through the environment.
    overrides = {
        "registry": args.registry,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "state_dir": args.state_dir,
    }
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"SOFTSENSOR_{key.upper()}"] = str(value)
    settings = Settings()
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
