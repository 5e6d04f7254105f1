"""Settings from SOFTSENSOR_* environment variables; one class, read when asked, never at import."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.lab.statestore import SCHEMES

LEGACY_ADMIN = "admin"  # the name audit entries give the single SOFTSENSOR_ADMIN_TOKEN


class NamedToken(BaseModel):
    """One admin's bearer token: the name is what the audit trail records (never the token)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    token: SecretStr

    @field_validator("token", mode="after")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("an admin token must not be empty")
        return value


class Settings(BaseSettings):
    """Everything configurable about the soft sensor's runtime."""

    model_config = SettingsConfigDict(env_prefix="SOFTSENSOR_", extra="ignore")

    registry: Path = Field(default=Path("models"), description="model registry root directory")
    models: list[str] | None = Field(
        default=None, description="names to serve (JSON list); default: every name in the registry"
    )
    default_model: str | None = Field(
        default=None, description="model used when a request names none; default: the first"
    )
    state_dir: Path = Field(
        default=Path("softsensor-state"), description="durable state (lab results SQLite file)"
    )
    state_url: str | None = Field(
        default=None,
        description="where lab results, the prediction log and stream state live: "
        "sqlite:///path (embedded, one process) or postgresql://user@host/db (shared by "
        "replicas); default: sqlite:///<state_dir>/lab_results.sqlite",
    )
    state_pool_size: int = Field(
        default=8, ge=2, description="PostgreSQL connections per process, at most"
    )
    state_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="wait this long for a PostgreSQL connection before answering 503",
    )
    state_refresh_s: float = Field(
        default=1.0,
        gt=0,
        description="with shared state: how often lab results other replicas stored are read "
        "(the most a bias they moved lags behind here)",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="one bearer token for the admin endpoints, recorded as 'admin' in the "
        "audit trail; unset (and no admin_tokens) = admin endpoints disabled",
    )
    admin_tokens: list[NamedToken] = Field(
        default_factory=list,
        description='named admin tokens, JSON: [{"name": "alice", "token": "..."}]; the name '
        "is recorded with every promote, rollback and void",
    )
    max_batch_rows: int = Field(default=10_000, ge=1, description="rows per predict request")
    max_body_bytes: int = Field(default=8 << 20, ge=1024, description="request body limit")
    gzip_answers: bool = Field(
        default=False,
        description="answer predict batches over 64 KiB gzipped to clients that accept it: "
        "worth it on links slower than about 1 Gbit/s (an edge box's uplink); on the "
        "historian's LAN or loopback it costs more time than it saves",
    )
    max_streams: int = Field(default=1_000, ge=1, description="stateful streams kept (LRU)")
    drift_window: int = Field(default=500, ge=10, description="values per PSI window")
    frozen_after_s: float = Field(
        default=600.0,
        gt=0,
        description="a sensor unchanged this long (data time) is frozen; a signal the card "
        "shows repeating longer in normal operation gets twice that",
    )
    watch_interval_s: float = Field(
        default=5.0, ge=0, description="seconds between champion-pointer checks (0 = off)"
    )
    default_stream: str = Field(
        default="default",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:/-]+$",
        description="the stream of requests and lab results that name none",
    )
    lab_match_tolerance_s: float = Field(
        default=90.0, gt=0, description="a lab result matches a prediction this close in time"
    )
    lab_max_age_s: float = Field(
        default=86_400.0,
        gt=0,
        description="lab results sampled longer than this before their stream's latest data "
        "time do not move the bias (late)",
    )
    lab_min_delay_s: float = Field(
        default=0.0,
        ge=0,
        description="a lab result known sooner than this after its sample is refused, unless "
        "the model card declares its target's lab_delay",
    )
    lab_max_delay_s: float = Field(
        default=86_400.0,
        gt=0,
        description="a lab result known later than this after its sample is refused, unless "
        "the model card declares its target's lab_delay",
    )
    lab_max_future_s: float = Field(
        default=300.0,
        ge=0,
        description="lab results sampled later than this after their stream's latest data "
        "time (or the wall clock) are refused",
    )
    predict_max_future_s: float = Field(
        default=300.0, ge=0, description="rows stamped later than the wall clock + this: refused"
    )
    stream_max_jump_s: float = Field(
        default=86_400.0,
        gt=0,
        description="rows more than this after their stream's latest data time are refused, "
        "unless they are live (within this of the wall clock)",
    )
    prediction_retention_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="predictions kept for lab matching, per stream, in data time",
    )
    clamp_inputs: bool = Field(
        default=False, description="clip every feature into its training range before scoring"
    )
    lab_gain: float = Field(default=0.3, gt=0, le=1, description="bias filter gain per result")
    lab_trust: float = Field(default=1.0, ge=0, le=1, description="trust in lab results, 0..1")
    interval_quantiles: tuple[str, str] = ("0.025", "0.975")  # residual quantiles of the card
    coalesce_requests: int = Field(
        default=64,
        ge=1,
        description="predict requests queued for a model while it scores are scored together "
        "in one call, up to this many (1 = one by one)",
    )
    coalesce_rows: int = Field(
        default=16,
        ge=1,
        description="only requests of at most this many rows are scored together; a larger "
        "one is scored on its own",
    )
    cors_origins: list[str] = Field(default_factory=list, description="no CORS unless listed")
    tag_maps: list[Path] = Field(
        default_factory=list,
        description="tag map files, or directories of them (*.yaml, *.yml), as a JSON list: "
        "which PI points feed each model's signals and take its answers back "
        "(predict's format=piwebapi and answer=piwebapi); validated at start",
    )
    # HTTP limits of `softsensor serve` (service.api.http_protocol): what a client may take.
    max_header_bytes: int = Field(
        default=32 << 10, ge=1024, description="request line and headers, at most (else 431)"
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="headers complete within this after a request begins"
    )
    body_timeout_s: float = Field(
        default=10.0, gt=0, description="longest pause while a request body arrives (else 408)"
    )
    keep_alive_s: int = Field(
        default=5, ge=1, description="an idle keep-alive connection is closed after this"
    )

    @field_validator("state_url", mode="after")
    @classmethod
    def _known_engine(cls, value: str | None) -> str | None:
        """A URL of an engine the service has: a typo fails at start, not at the first lab
        result."""
        if value is not None and value.split("://", 1)[0] not in SCHEMES:
            raise ValueError(f"scheme must be one of {list(SCHEMES)}")
        return value

    @property
    def store_url(self) -> str:
        """The state URL in force (the SQLite file in ``state_dir`` unless one is set)."""
        if self.state_url is not None:
            return self.state_url
        return f"sqlite:///{self.state_dir / 'lab_results.sqlite'}"

    @field_validator("admin_token", mode="after")
    @classmethod
    def _empty_token_is_no_token(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty token must not open the admin endpoints to an empty bearer."""
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @model_validator(mode="after")
    def _distinct_admins(self) -> Settings:
        """Two admins with one name (or one token) would make the audit trail ambiguous."""
        tokens = self.named_tokens()
        for what, values in (
            ("name", [t.name for t in tokens]),
            ("token", [t.token.get_secret_value() for t in tokens]),
        ):
            if len(set(values)) != len(values):
                raise ValueError(f"admin_tokens: every {what} must be distinct")
        return self

    def named_tokens(self) -> list[NamedToken]:
        """Every admin token with its name; the single admin_token is named 'admin'."""
        tokens = list(self.admin_tokens)
        if self.admin_token is not None:
            tokens.append(NamedToken(name=LEGACY_ADMIN, token=self.admin_token))
        return tokens

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    opcua_endpoint: str | None = Field(
        default=None,
        pattern=r"^opc\.tcp://[^/\s]+(/\S*)?$",
        description="serve the estimates as OPC UA variables on this endpoint "
        "(opc.tcp://host:port/path); unset = no OPC UA server",
    )
    opcua_stale_after_s: float = Field(
        default=30.0,
        gt=0,
        description="an OPC UA stream with no answered row for this long turns "
        "BadNoCommunication (its bridge or historian is gone)",
    )

    @model_validator(mode="after")
    def _one_opcua_server(self) -> Settings:
        """One process binds the OPC UA port: with several workers each would try to."""
        if self.opcua_endpoint is not None and self.workers > 1:
            raise ValueError("opcua_endpoint needs workers = 1 (each worker would bind it)")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
