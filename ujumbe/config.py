"""Settings, read once from the environment (and the command line) at start."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _mode(raw: str) -> str:
    """on | off | auto from a variable's value (unset or unknown: auto)."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return "on"
    if value in ("0", "false", "no", "off"):
        return "off"
    return "auto"


SMPP_DEFAULT_PORT = 2775
DEFAULT_DATA_DIR = "./ujumbe-data"


def data_dir_from_env() -> Path:
    """UJUMBE_DATA_DIR, else ./ujumbe-data: the one rule every command follows
    (``--data-dir`` overrides it, see cli._settings)."""
    return Path(os.environ.get("UJUMBE_DATA_DIR") or DEFAULT_DATA_DIR)


def private_dir(path: Path) -> None:
    """Create ``path`` (the data dir) readable by its owner only: it holds the
    database and the server secret."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def smpp_port_from_env(default: int | None) -> int | None:
    """UJUMBE_SMPP_PORT: a port, or 0/off for no SMPP server; unset gives ``default``."""
    raw = os.environ.get("UJUMBE_SMPP_PORT", "").strip().lower()
    if not raw:
        return default
    if raw in ("0", "off", "no", "false", "none"):
        return None
    return int(raw)


@dataclass
class Settings:
    data_dir: Path = field(default_factory=data_dir_from_env)
    database_url: str | None = field(default_factory=lambda: os.environ.get("UJUMBE_DATABASE_URL") or None)
    host: str = "127.0.0.1"
    port: int = 8080
    role: str = "all"  # api | worker | all
    # Set in the processes `serve --processes N` starts: their parent holds the
    # embedded database's lock (runtime.Platform.lock_data_dir) for them.
    parent_holds_lock: bool = False
    allow_private_callbacks: bool = field(default_factory=lambda: _flag("UJUMBE_ALLOW_PRIVATE_CALLBACKS"))
    # The built-in operator simulator stands in for a carrier unless turned off.
    simulator: bool = field(default_factory=lambda: not _flag("UJUMBE_NO_SIMULATOR"))
    # Injecting inbound messages and network notices with the tenant endpoints
    # (POST /v1/simulator/...): "auto" allows it while the built-in simulator is
    # the only carrier (no operator connector configured), "on" always, "off"
    # never. The operator's /admin/v1/simulator/... endpoints are not affected.
    simulator_inbound: str = field(default_factory=lambda: _mode(os.environ.get("UJUMBE_SIMULATOR_INBOUND", "")))
    sim_receipt_delay_ms: tuple[int, int] = field(
        default_factory=lambda: _range(os.environ.get("UJUMBE_SIM_RECEIPT_DELAY_MS", "500-3000"))
    )
    # The call simulator's pace: 1.0 real time; 0.01 makes a 6 s call last 60 ms
    # (the figures it reports stay the real ones).
    sim_call_speed: float = field(default_factory=lambda: float(os.environ.get("UJUMBE_SIM_CALL_SPEED", "1") or 1))
    validity_s: int = 48 * 3600  # no final receipt by then: EXPIRED
    expire_every_s: float = 5.0  # how often the sweeper looks for messages past their validity
    # A campaign sends at most this many messages a second (per worker process)
    # unless it sets its own rate: 100,000 numbers must not flood a connector.
    campaign_rate: int = field(default_factory=lambda: int(os.environ.get("UJUMBE_CAMPAIGN_RATE", "100") or 100))
    access_token_ttl_s: int = 3600
    refresh_token_ttl_s: int = 30 * 86400
    secret_key: str = ""
    callback_delay_scale: float = 1.0  # multiplies every callback retry delay (tests use a small one)
    # A callback URL's name not resolved within this is accepted (the sender checks again).
    callback_resolve_timeout_s: float = 3.0
    # Platform admin (operator connectors, routes). Empty: the /admin API answers 404.
    admin_token: str = field(default_factory=lambda: os.environ.get("UJUMBE_ADMIN_TOKEN", ""))
    # Workers re-read connectors and routes this often, for changes another process made on SQLite.
    routing_poll_s: float = 5.0
    # The SMPP server customers bind to (worker roles). None: none. `ujumbe serve`
    # defaults to 2775; a Platform built in code listens only when told (0 = any free port).
    smpp_port: int | None = field(default_factory=lambda: smpp_port_from_env(None))
    smpp_host: str = field(default_factory=lambda: os.environ.get("UJUMBE_SMPP_HOST", "127.0.0.1"))
    # Addresses (comma-separated IPs or networks) whose X-Forwarded-For and
    # X-Forwarded-Proto are believed. None by default: any local process could
    # otherwise claim any client address (and so dodge per-address limits).
    trusted_proxies: str = field(default_factory=lambda: os.environ.get("UJUMBE_TRUSTED_PROXIES", "").strip())
    # Dispatch. A try is a real refusal by an operator: a transient one is tried
    # again after retry_base_ms x 2^(try-1) (capped at retry_cap_ms, with jitter),
    # up to max_attempts. While no bind of a message's route is up it waits
    # instead, not counting tries, until its validity ends; it is looked at again
    # at once when a bind comes up (or the routes change), and otherwise every
    # bind_wait_recheck_s: long, as each look at a large backlog is a write per message.
    retry_base_ms: int = field(default_factory=lambda: _number("UJUMBE_RETRY_BASE_MS", 1000))
    retry_cap_ms: int = field(default_factory=lambda: _number("UJUMBE_RETRY_CAP_MS", 300_000))
    max_attempts: int = field(default_factory=lambda: _number("UJUMBE_MAX_ATTEMPTS", 10))
    bind_wait_recheck_s: float = field(default_factory=lambda: _number("UJUMBE_BIND_WAIT_RECHECK_S", 300.0))
    # An operator connector that lost its bind tries again after 1 s, doubling up to this.
    smpp_rebind_max_s: float = field(default_factory=lambda: _number("UJUMBE_SMPP_REBIND_MAX_S", 10.0))
    # Each dispatch worker beats this often; one whose beat has not moved for
    # worker_dead_s is taken for dead and another worker sends what it held.
    worker_heartbeat_s: float = field(default_factory=lambda: _number("UJUMBE_WORKER_HEARTBEAT_S", 1.0))
    worker_dead_s: float = field(default_factory=lambda: _number("UJUMBE_WORKER_DEAD_S", 5.0))
    # /readyz of an API process answers 503 unless at least this many dispatch
    # workers (in other processes) have beaten within worker_dead_s. 0: an API
    # alone checks none; `serve --processes N --role all` sets 1 in its API processes.
    ready_workers: int = field(default_factory=lambda: _number("UJUMBE_READY_WORKERS", 0))
    # Where GET /metrics (and /healthz, /readyz) answer without the admin token,
    # for Prometheus on a private interface: "host:port", or "" (none).
    metrics_listen: str = field(default_factory=lambda: os.environ.get("UJUMBE_METRICS_LISTEN", "").strip())
    # Email (docs/email.md). A relay for the embedded default's email instead of
    # the email simulator: smtp://user:pass@host:587 (STARTTLS when offered),
    # smtps://... (implicit TLS); ?verify=0 skips certificate checks.
    smtp_url: str = field(default_factory=lambda: os.environ.get("UJUMBE_SMTP_URL", ""))
    # The bounce (DSN) listener: off unless a port is given (0 = any free port).
    bounce_port: int | None = field(default_factory=lambda: _port_or_none(os.environ.get("UJUMBE_BOUNCE_PORT", "")))
    bounce_host: str = field(default_factory=lambda: os.environ.get("UJUMBE_BOUNCE_HOST", "127.0.0.1"))
    # The domain of VERP return paths (bounce+...@DOMAIN); unset: the sender's domain.
    bounce_domain: str = field(default_factory=lambda: os.environ.get("UJUMBE_BOUNCE_DOMAIN", ""))
    # The text-to-speech engine calls speak with (docs/speech.md); espeak-ng is built in.
    tts_engine: str = field(default_factory=lambda: os.environ.get("UJUMBE_TTS_ENGINE", "").strip() or "espeak")
    # Final messages (and their events, parts, callback attempts) older than
    # this many days are purged, their totals kept per day (workers/retention.py).
    # 0, the default: kept forever.
    retention_days: float = field(default_factory=lambda: _number("UJUMBE_RETENTION_DAYS", 0.0))

    def load_secret(self) -> str:
        """The server secret signs tokens and derives per-account keys.

        UJUMBE_SECRET_KEY wins (every machine of a cluster must share it);
        otherwise a key is made once and kept in the data dir.
        """
        if self.secret_key:
            return self.secret_key
        env = os.environ.get("UJUMBE_SECRET_KEY")
        if env:
            self.secret_key = env
            return env
        path = self.data_dir / "secret.key"
        if path.exists():
            self.secret_key = path.read_text().strip()
        else:
            private_dir(self.data_dir)
            self.secret_key = secrets.token_urlsafe(48)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.secret_key + "\n")
        return self.secret_key

    def command(self) -> str:
        """How to run ``ujumbe`` against this server's data from another shell:
        the program as it was started, ``--database-url`` (password masked)
        when set, and ``--data-dir`` as an absolute path (the default is
        relative to the directory the server was started in, which need not be
        the shell's), unless the data dir holds nothing it needs: a database
        URL and UJUMBE_SECRET_KEY (which must then be given the same way)."""
        words = [_program()]
        if self.database_url:
            from urllib.parse import urlsplit

            url = self.database_url
            parts = urlsplit(url)
            if parts.password:
                url = url.replace(f":{parts.password}@", ":PASSWORD@", 1)
            words += ["--database-url", url]
        if not (self.database_url and os.environ.get("UJUMBE_SECRET_KEY")):  # the secret lives there too
            words += ["--data-dir", str(self.data_dir.resolve())]
        return " ".join(shlex.quote(w) for w in words)


def _program() -> str:
    """``ujumbe`` when that is the command on PATH, else the path this one was run by."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "ujumbe":
        found = shutil.which("ujumbe")
        if found and os.path.realpath(found) == os.path.realpath(argv0):
            return "ujumbe"
        return argv0
    return f"{sys.executable} -m ujumbe"


def _number(name: str, default: int | float) -> Any:
    """A number from the environment, of the default's type; unset or empty gives the default."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return type(default)(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None


def _port_or_none(raw: str) -> int | None:
    raw = raw.strip().lower()
    return None if raw in ("", "off", "no", "none", "false") else int(raw)


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)
