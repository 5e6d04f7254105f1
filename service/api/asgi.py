"""Entry point for ASGI servers: ``uvicorn --factory service.api.asgi:create``."""

from __future__ import annotations

import logging

from starlette.applications import Starlette

from service.api.app import create_app
from service.settings import Settings


def create() -> Starlette:
    """A fresh app from the environment's settings (each worker process calls this)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("asyncua").setLevel(logging.WARNING)  # else a line per OPC UA read
    return create_app(Settings())
