"""The one settings object: everything configurable comes from the environment (or `.env`)."""

import contextlib
import math
import os
import secrets
import tempfile
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATA_DIR = Path("data")
# RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits).
MIN_SECRET_KEY_BYTES = 32
# And hard to guess: a long placeholder ("changeme" five times) is not a key.
MIN_SECRET_KEY_BITS = 64
MIN_DISTINCT_TRIGRAMS = 0.75
MAKE_A_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


def looks_guessable(key: str) -> bool:
    """Too few distinct characters for its length (the length times the Shannon entropy of
    its characters), or a repeated word or pattern (its three-character runs repeat)."""
    counts = Counter(key)
    bits = -sum(count * math.log2(count / len(key)) for count in counts.values())
    trigrams = [key[i : i + 3] for i in range(len(key) - 2)]
    return bits < MIN_SECRET_KEY_BITS or len(set(trigrams)) < len(trigrams) * MIN_DISTINCT_TRIGRAMS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""
    secret_key: str = ""
    # Short access tokens; a login's refresh token renews them (and is renewed itself).
    access_token_expire_minutes: int = Field(default=15, ge=1)
    refresh_token_expire_days: int = Field(default=30, ge=1)
    # Tokens name who made them and for whom (iss, aud): another service's tokens, even one
    # sharing the key, are refused.
    token_issuer: str = "resource-api"  # noqa: S105  (names, not secrets)
    token_audience: str = "resource-api"  # noqa: S105
    # Log lines as JSON objects or as text; unset: JSON in production, text elsewhere.
    log_format: Literal["json", "text"] | None = None
    access_log: bool = True  # one line per request
    # GET /metrics in Prometheus' format; with a token set, only `Authorization: Bearer <it>`.
    metrics_enabled: bool = True
    metrics_token: str = ""
    # How long a write made with an Idempotency-Key is answered again instead of made again.
    idempotency_key_ttl_hours: int = Field(default=24, ge=1)
    # Empty: live updates fan out within one process. `redis://host:6379/0`: across processes.
    broker_url: str = ""
    broker_channel: str = "resource-api:updates"  # deployments sharing a Redis need their own
    # Empty: external-data answers 503 "External service not configured", asking nobody.
    external_api_url: str = ""
    external_api_key: str = ""
    external_api_timeout: float = Field(default=5.0, gt=0)
    external_api_max_reply_bytes: int = Field(default=1024 * 1024, ge=1)
    cors_origins: Annotated[list[str], NoDecode] = []
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    # Connections: at most pool size + overflow requests hold a session at once; the rest wait
    # (without a thread) up to the pool timeout, then get 503 with Retry-After. An overflow
    # connection is closed as soon as it is given back whenever the pool is full (SQLAlchemy's
    # meaning), so under steady load it is opened again and again (a new server process each
    # time on PostgreSQL): all ten kept by default, opened as load first needs them.
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    db_pool_timeout: float = Field(default=10.0, gt=0)
    # Worker threads for sync routes and dependencies; must exceed the connection capacity so
    # that a request holding a connection always finds a thread to finish and give it back.
    thread_pool_size: int = Field(default=40, ge=2)
    # Argon2id cost (RFC 9106's second recommended option by default); tests lower it for speed.
    password_hash_time_cost: int = Field(default=3, ge=1)
    password_hash_memory_kib: int = Field(default=65536, ge=32)
    # Hashes running at once; the rest wait on the event loop, holding no connection. 0: cores.
    password_hash_concurrency: int = Field(default=0, ge=0)

    # The HTTP server (app.server): limits that hold whatever sits in front of it.
    max_connections: int = Field(default=1000, ge=1)  # per process
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)  # request line + headers
    header_timeout: float = Field(default=10.0, gt=0)  # to send the request line and headers
    keep_alive_timeout: int = Field(default=5, ge=1)  # idle between requests
    shutdown_timeout: int = Field(default=10, ge=1)  # in-flight requests get this long on SIGTERM
    # Peers whose X-Forwarded-For / -Proto are believed (comma-separated IPs or CIDRs, or *).
    trusted_proxies: str = ""
    # Host headers served (comma-separated; `*` any, `.example.com` a domain and its subdomains).
    allowed_hosts: Annotated[list[str], NoDecode] = ["*"]

    # Rate limits, in the `limits` notation ("20/minute;100/hour"); empty turns one off.
    rate_limits_enabled: bool = True
    # Empty: in process, or in the broker's Redis when BROKER_URL is set (shared by workers).
    rate_limit_storage_url: str = ""
    rate_limit_key_prefix: str = "resource-api"  # deployments sharing a Redis need their own
    rate_limit_login_per_address: str = "30/minute;300/hour"
    # Failed logins per account: each tier exceeded locks the account out for its window, so
    # the lockout grows (one minute, then fifteen, then an hour, then a day).
    rate_limit_login_failures_per_account: str = "5/minute;10/15minutes;20/hour;50/day"
    rate_limit_registrations_per_address: str = "10/hour"
    rate_limit_writes_per_user: str = "120/minute"
    rate_limit_reads_per_address: str = "1200/minute"

    # Live updates (/ws/updates).
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    ws_messages_per_second: float = Field(default=20.0, gt=0)  # per connection, bursts of twice
    ws_connections_per_user: int = Field(default=10, ge=1)
    # How often an open socket checks that its user still exists and is active.
    ws_revalidate_seconds: float = Field(default=30.0, gt=0)
    # The server's keepalive pings (uvicorn's defaults); a socket whose client answers no
    # ping within the timeout is closed with 1011. 0 sends no pings.
    ws_ping_interval_seconds: float = Field(default=20.0, ge=0)
    ws_ping_timeout_seconds: float = Field(default=20.0, gt=0)

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'resource-api.db'}"
        if self.thread_pool_size <= self.db_connection_capacity:
            raise ValueError(
                "THREAD_POOL_SIZE must exceed DB_POOL_SIZE + DB_MAX_OVERFLOW "
                f"({self.thread_pool_size} <= {self.db_connection_capacity})"
            )
        if self.environment == "production":
            # The key itself is never part of the message.
            if len(self.secret_key.encode()) < MIN_SECRET_KEY_BYTES:
                raise ValueError(
                    f"SECRET_KEY must be set to at least {MIN_SECRET_KEY_BYTES} bytes in "
                    f"production (make one: {MAKE_A_KEY})"
                )
            if looks_guessable(self.secret_key):
                raise ValueError(
                    "SECRET_KEY looks like a placeholder, too easy to guess for production "
                    f"(make one: {MAKE_A_KEY})"
                )
        return self

    @property
    def db_connection_capacity(self) -> int:
        return self.db_pool_size + self.db_max_overflow

    @property
    def effective_log_format(self) -> str:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.environment == "production" else "text"

    @property
    def hash_concurrency(self) -> int:
        return self.password_hash_concurrency or os.cpu_count() or 1

    @property
    def signing_key(self) -> str:
        """The JWT key: SECRET_KEY, else one generated once and kept under DATA_DIR.

        Kept on disk so that tokens survive a restart; tests get a throwaway key instead.
        """
        if self.secret_key:
            return self.secret_key
        if self.environment == "test":
            self.secret_key = secrets.token_urlsafe(48)
            return self.secret_key
        key_file = self.data_dir / "secret_key"
        if not key_file.exists():
            _create_key_file(key_file)
        self.secret_key = key_file.read_text().strip()
        return self.secret_key


def _create_key_file(key_file: Path) -> None:
    """Write a fresh key atomically: several workers starting at once all end up with one key."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd, draft = tempfile.mkstemp(dir=key_file.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        with contextlib.suppress(FileExistsError):  # another worker won the race: keep its key
            os.link(draft, key_file)
    finally:
        os.unlink(draft)


@cache
def get_settings() -> Settings:
    return Settings()
