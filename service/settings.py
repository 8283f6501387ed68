"""Configuration: one frozen Struct read from the environment.

Nothing else in qsite reads ``os.environ``. Each field maps to one variable:
``database_url`` <- ``DATABASE_URL``, ``redis_url`` <- ``REDIS_URL``, every other
field ``name`` <- ``QSITE_NAME``. A bad value stops start-up with one line naming
the variable.

Any variable may instead be given as ``<NAME>_FILE``, the path of a file holding
the value (Docker/compose secrets under /run/secrets, Kubernetes Secret volumes):
secrets then never sit in the process environment or in ``docker inspect``.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import Literal

import msgspec

Environment = Literal["development", "test", "production"]

# Fields read without the QSITE_ prefix (the conventional names).
_UNPREFIXED = {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL"}
# Suffix of the variable that names a file holding the value instead.
FILE_SUFFIX = "_FILE"

# Secrets that production must be given and development generates into .data/.
SECRET_FIELDS = ("jwt_secret", "pii_keys", "pii_index_key", "webhook_signing_secret")


class SettingsError(Exception):
    """A configuration value is missing or malformed; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    env: Environment = "development"
    database_url: str | None = None
    # The role `qsite migrate` connects as (owns the schema). Unset: DATABASE_URL's. When its
    # user differs from DATABASE_URL's, migrate grants that app role what it needs after applying.
    migration_database_url: str | None = None
    # An administrator's URL, read only by `qsite db-roles --apply` (creates the two roles).
    admin_database_url: str | None = None
    redis_url: str | None = None
    data_dir: str = ".data"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    cors_origins: list[str] = []
    # Load balancers / ingress controllers whose forwarded header is believed (CIDRs). The client
    # address (login limits, logs) comes from that header only when the peer is one of these.
    trusted_proxies: list[str] = []
    # The header those proxies write: X-Forwarded-For (most) or RFC 7239 Forwarded. Only one is read,
    # so a client cannot slip a forged address through the header the proxy does not rewrite.
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    # Seconds `serve` waits for open requests on shutdown (Kubernetes' grace period must exceed it).
    shutdown_drain_seconds: int = 20
    # Connecting as a PostgreSQL superuser defeats the app role's limits (it could disable the
    # audit trigger): production logs a warning, or refuses to start when this is on.
    refuse_superuser: bool = False

    # PostgreSQL pool and timeouts.
    pool_min_size: int = 2
    pool_max_size: int = 10
    statement_timeout_ms: int = 5000
    command_timeout_s: float = 10.0
    # Waiting for a pooled connection (the FIFO gate, the pool, a new connection's handshake)
    # answers 503 past this; and no HTTP request spends longer than db_deadline_s on
    # PostgreSQL in all, whatever the server does (a hung one included).
    db_acquire_timeout_s: float = 2.0
    db_deadline_s: float = 8.0
    # Redis is an accelerator: a dead one must cost milliseconds.
    redis_timeout_ms: int = 250
    redis_prefix: str = "qsite:"

    # Secrets (see SECRET_FIELDS). pii_keys: "keyid:base64key,..." newest first.
    jwt_secret: str = ""
    pii_keys: str = ""
    pii_index_key: str = ""
    webhook_signing_secret: str = ""
    access_token_minutes: int = 15
    refresh_token_days: int = 14

    # Request limits. Bodies are checked before anything decodes them (service/http.py):
    # larger than max_body_bytes -> 413, JSON nested deeper than max_json_depth -> 400.
    max_body_bytes: int = 1_048_576
    max_json_depth: int = 32
    max_page_size: int = 100
    idempotency_ttl_days: int = 7
    graphql_max_depth: int = 10
    graphql_max_aliases: int = 30
    graphql_max_tokens: int = 5000
    graphql_max_operations: int = 1
    # Accept only the documents in graphql/operations/ (by hash): a hardening for production.
    graphql_persisted_only: bool = False
    login_attempts_per_minute: int = 10
    # Looser than per account: colleagues behind one site gateway share an address.
    login_attempts_per_address_per_minute: int = 60
    # Public release-certificate checks per client address per minute (then 429): codes are
    # unguessable, this keeps anyone from trying many.
    certificate_checks_per_address_per_minute: int = 30
    # How long a verified API key is trusted without asking PostgreSQL again.
    api_key_cache_seconds: int = 30
    # In-process cache of compiled read answers (service/readpath.py), per worker; 0 turns the
    # cache off (in process and in Redis): every compiled read runs its statement.
    read_cache_mb: int = 32
    # siteEvents: render each event once per selection and visibility class and send those bytes to
    # every subscriber sharing them (service/live_frames.py); false executes GraphQL per subscriber
    # and event (the reference path, kept for comparison: bench/live.py runs both).
    live_shared_frames: bool = True
    # WebSocket per-message deflate (RFC 7692), for clients that offer it. Off: each subscriber has its
    # own compressor, so a shared frame is compressed once per subscriber on the event loop, which at
    # 1,000 subscribers took delivery p99 past 1 s for frames of ~150 bytes (bench/live.py, README).
    ws_per_message_deflate: bool = False

    # Background work.
    run_background_jobs: bool = True
    # Retention (a job deletes in batches of retention_batch_size): events older than this
    # that every webhook has fanned out; refresh tokens this long after they expired; webhook
    # deliveries delivered or failed this long ago. Idempotency keys: idempotency_ttl_days.
    event_retention_days: int = 30
    refresh_token_retention_days: int = 7
    webhook_delivery_retention_days: int = 30
    retention_batch_size: int = 1000
    # After start-up, freeze what start-up allocated (schema, documents, code) out of the garbage
    # collector's sight and collect the young generation less often (measured: bench/graphql.py).
    gc_freeze: bool = True

    # Benchmarks (bench/): the database they rebuild on DATABASE_URL's server and their Redis
    # key prefix. Two people benchmarking on one server pick different names.
    bench_database: str = "qsite_bench"
    bench_redis_prefix: str = "bench:"

    # Supplies: low stock below this many days of cover; staff shifts per site per day for the
    # per-shift usage rule; raise a replenishment automatically when an item turns low.
    supply_low_cover_days: float = 3.0
    supply_staff_shifts_per_day: float = 6.0
    supply_auto_replenish: bool = True
    # Webhooks: attempts before a delivery is marked failed; per-attempt timeout. Private,
    # loopback and link-local targets are refused unless this test-only switch is on.
    webhook_max_attempts: int = 8
    webhook_timeout_s: float = 5.0
    webhook_allow_private: bool = False

    # Rooms: minutes a disinfected room airs before it may be inspected and made ready.
    room_airing_minutes: int = 30

    # Health: minutes after a check-in slot (a half-day for two a day) ends before a missing
    # check-in raises a missed_checkin alert (the sweep runs every 5 minutes).
    missed_checkin_grace_minutes: int = 60

    # The command dashboard (/command): a browser session ends after this many hours, or after
    # this many idle minutes (an open dashboard polls, so a wall screen stays logged in until the
    # lifetime ends). The cookie is Secure in production unless set here (an intranet served
    # over plain HTTP needs false); the page polls for new figures every refresh seconds.
    command_session_hours: int = 12
    command_session_idle_minutes: int = 60
    command_cookie_secure: bool | None = None
    command_refresh_seconds: float = 15.0

    def __post_init__(self) -> None:
        if self.pool_min_size < 0 or self.pool_max_size < max(1, self.pool_min_size):
            raise SettingsError("QSITE_POOL_MAX_SIZE must be >= 1 and >= QSITE_POOL_MIN_SIZE")
        if not 0 < self.db_acquire_timeout_s <= self.db_deadline_s:
            raise SettingsError("QSITE_DB_ACQUIRE_TIMEOUT_S must be > 0 and <= QSITE_DB_DEADLINE_S")
        if min(self.event_retention_days, self.refresh_token_retention_days, self.webhook_delivery_retention_days) < 1:
            raise SettingsError("retention periods (QSITE_*_RETENTION_DAYS) must be at least 1 day")
        if self.command_session_hours < 1 or self.command_session_idle_minutes < 1 or self.command_refresh_seconds <= 0:
            raise SettingsError("QSITE_COMMAND_SESSION_HOURS, QSITE_COMMAND_SESSION_IDLE_MINUTES and QSITE_COMMAND_REFRESH_SECONDS must be positive")
        if not 1 <= self.max_page_size <= 1000:
            raise SettingsError("QSITE_MAX_PAGE_SIZE must be between 1 and 1000")
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise SettingsError(f"QSITE_TRUSTED_PROXIES: {cidr!r} is not an address or CIDR") from None
        if self.env == "production":
            missing = [env_name(f) for f in SECRET_FIELDS if not getattr(self, f)]
            if missing:
                raise SettingsError(f"{missing[0]} must be set in production (QSITE_ENV=production)")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def cookie_secure(self) -> bool:
        """Whether the command dashboard's cookies carry ``Secure``."""
        return self.is_production if self.command_cookie_secure is None else self.command_cookie_secure


def env_name(field: str) -> str:
    return _UNPREFIXED.get(field, f"QSITE_{field.upper()}")


def _parse(field: str, raw: str, annotation: object) -> object:
    if field in ("cors_origins", "trusted_proxies"):
        return [o.strip() for o in raw.split(",") if o.strip()]
    if annotation in (bool, "bool"):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{env_name(field)} must be true or false, got {raw!r}")
    return raw


def _raw_value(environ: dict[str, str], name: str) -> str | None:
    """``NAME`` or the content of the file ``NAME_FILE`` names (one trailing newline dropped)."""
    path = environ.get(name + FILE_SUFFIX)
    if not path:
        return environ.get(name)
    if environ.get(name):
        raise SettingsError(f"{name} and {name}{FILE_SUFFIX} are both set; set one")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"{name}{FILE_SUFFIX}: cannot read {path} ({exc.strerror})") from None
    return text.removesuffix("\n").removesuffix("\r")


def load_settings(environ: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from the environment (or ``environ``), then ``overrides``."""
    environ = dict(os.environ if environ is None else environ)
    hints = {f.name: f.type for f in msgspec.structs.fields(Settings)}
    values: dict[str, object] = {}
    for field, annotation in hints.items():
        raw = _raw_value(environ, env_name(field))
        if raw is not None and raw != "":
            values[field] = _parse(field, raw, annotation)
    values.update(overrides)
    try:
        settings = msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        field = str(exc).rsplit("$.", 1)[-1].rstrip("`") if "$." in str(exc) else ""
        name = env_name(field) if field in hints else "configuration"
        raise SettingsError(f"{name}: {str(exc).split(' - at ')[0]}") from None
    if not settings.is_production:
        settings = _with_development_secrets(settings)
    return settings


def _with_development_secrets(settings: Settings) -> Settings:
    """Fill missing secrets from ``<data_dir>/dev-secrets.json``, creating it once.

    Only outside production: development and tests get stable keys without
    anyone pasting secrets into a shell; production refuses to start instead.
    """
    missing = [f for f in SECRET_FIELDS if not getattr(settings, f)]
    if not missing:
        return settings
    path = settings.data_path / "dev-secrets.json"
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    if any(f not in stored for f in SECRET_FIELDS):
        stored = {**generate_secrets(), **stored}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
    return msgspec.structs.replace(settings, **{f: stored[f] for f in missing})


def generate_secrets() -> dict[str, str]:
    """Fresh random secrets, in the formats the settings expect."""
    return {
        "jwt_secret": secrets.token_urlsafe(48),
        "pii_keys": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "pii_index_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "webhook_signing_secret": secrets.token_urlsafe(32),
    }


# Roles `qsite gen-secrets` names (README: Deploy); any names work, these are the defaults.
MIGRATION_ROLE, APP_ROLE = "qsite_owner", "qsite_app"


def production_env(*, database_host: str, redis_url: str, admin: bool = False) -> dict[str, str]:
    """Every variable production needs, with fresh secrets and role passwords.

    ``admin``: also the PostgreSQL superuser's password and URL, for a deployment that runs
    its own PostgreSQL (compose): `qsite db-roles --apply` creates the two roles with it.
    """
    def url(role: str, password: str) -> str:
        return f"postgresql://{role}:{password}@{database_host}"

    env = {
        "QSITE_ENV": "production",
        "DATABASE_URL": url(APP_ROLE, secrets.token_urlsafe(24)),
        "QSITE_MIGRATION_DATABASE_URL": url(MIGRATION_ROLE, secrets.token_urlsafe(24)),
        "REDIS_URL": redis_url,
        **{env_name(field): value for field, value in generate_secrets().items()},
    }
    if admin:
        env["POSTGRES_PASSWORD"] = secrets.token_urlsafe(24)
        env["QSITE_ADMIN_DATABASE_URL"] = url("postgres", env["POSTGRES_PASSWORD"])
    return env


def env_file_text(env: dict[str, str]) -> str:
    header = (
        "# qsite production environment (`qsite gen-secrets`). Keep it secret: it holds the keys of the\n"
        "# personal data at rest. Losing QSITE_PII_KEYS or QSITE_PII_INDEX_KEY loses that data: back them up.\n"
    )
    return header + "".join(f"{name}={value}\n" for name, value in env.items())
