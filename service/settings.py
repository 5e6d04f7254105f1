"""Settings from SOFTSENSOR_* environment variables; one class, read when asked, never at import."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything configurable about the soft sensor's runtime."""

    model_config = SettingsConfigDict(env_prefix="SOFTSENSOR_", extra="ignore")

    registry: Path = Field(default=Path("models"), description="model registry root directory")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
