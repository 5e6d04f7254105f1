"""Entry point for ASGI servers: ``uvicorn --factory service.api.asgi:create``."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from service.api.app import create_app
from service.settings import Settings


def create() -> FastAPI:
    """A fresh app from the environment's settings (each worker process calls this)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return create_app(Settings())
