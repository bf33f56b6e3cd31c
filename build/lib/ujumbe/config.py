"""Settings, read once from the environment (and the command line) at start."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path


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
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("UJUMBE_DATA_DIR", "./ujumbe-data")))
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
    validity_s: int = 48 * 3600  # no final receipt by then: EXPIRED
    access_token_ttl_s: int = 3600
    refresh_token_ttl_s: int = 30 * 86400
    secret_key: str = ""
    callback_delay_scale: float = 1.0  # multiplies every callback retry delay (tests use a small one)
    # Platform admin (operator connectors, routes). Empty: the /admin API answers 404.
    admin_token: str = field(default_factory=lambda: os.environ.get("UJUMBE_ADMIN_TOKEN", ""))
    # Workers re-read connectors and routes this often, for changes another process made on SQLite.
    routing_poll_s: float = 5.0
    # The SMPP server customers bind to (worker roles). None: none. `ujumbe serve`
    # defaults to 2775; a Platform built in code listens only when told (0 = any free port).
    smpp_port: int | None = field(default_factory=lambda: smpp_port_from_env(None))
    smpp_host: str = field(default_factory=lambda: os.environ.get("UJUMBE_SMPP_HOST", "127.0.0.1"))

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
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.secret_key = secrets.token_urlsafe(48)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.secret_key + "\n")
        return self.secret_key


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)
