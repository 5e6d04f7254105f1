"""``softsensor connect``: the plant bridge, between a plant's OPC UA server and the service.

    softsensor connect --opcua opc.tcp://dcs:4840 --tags unit1.yaml --service http://127.0.0.1:8000

It runs until stopped (SIGINT or SIGTERM end it with exit code 0); a lost plant server or
service is retried, never fatal. A tag map that cannot be used stops it at once, naming the
key (``service.plant.tagmap``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from service.cli.arguments import HelpWithDefaults, Subcommands, positive_float


def add_connect_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "connect",
        help="bridge a plant's OPC UA server and the service: inputs in, estimates back",
        description="Subscribes to the tag map's input nodes, sends a row to the service's "
        "/v1/predict as they change, and writes the estimates to the tag map's output nodes.",
        formatter_class=HelpWithDefaults,
    )
    p.add_argument("--opcua", metavar="ENDPOINT", required=True, help="plant OPC UA server")
    p.add_argument("--tags", metavar="TAGMAP", type=Path, required=True, help="tag map (YAML)")
    p.add_argument(
        "--service", metavar="URL", default="http://127.0.0.1:8000", help="the soft sensor"
    )
    p.add_argument("--model", default=None, help="model name (default: the tag map's)")
    p.add_argument(
        "--period", type=positive_float, default=1.0, help="seconds between rows, at least"
    )
    p.add_argument(
        "--resend",
        type=positive_float,
        default=5.0,
        help="seconds without a change after which the latest values are sent again",
    )
    p.set_defaults(handler=run_connect, parser=p)


def run_connect(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import asyncio
    import logging
    import signal

    from service.plant.opcua_bridge import Bridge
    from service.plant.tagmap import load_tag_map

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for chatty in ("asyncua", "httpx"):  # else lines per notification and per request
        logging.getLogger(chatty).setLevel(logging.WARNING)
    tags = load_tag_map(args.tags)
    bridge = Bridge(
        args.opcua,
        tags,
        args.service,
        model=args.model,
        period_s=args.period,
        resend_s=args.resend,
    )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, bridge.stop)
        await bridge.run()
        logging.getLogger("softsensor.bridge").info("stopped after %d rows", bridge.sent)

    asyncio.run(run())
    return 0
