"""Wiring: builds the store, services, channels and workers for one process.

``Platform`` is the composition root. Entry points (the HTTP app, the CLI,
tests) make one, ``start`` it with a role, and reach services through it;
nothing below this module knows how the pieces were put together.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
from pathlib import Path
from typing import Any

from ujumbe.channels.base import Channel
from ujumbe.channels.simulator import Simulator
from ujumbe.config import Settings
from ujumbe.services.accounts import Accounts
from ujumbe.services.callbacks import CallbackLog, check_target
from ujumbe.services.credits import Credits
from ujumbe.services.dashboard import Dashboard, WebSessions
from ujumbe.services.messaging import Messaging
from ujumbe.services.premium import Premium
from ujumbe.services.reports import Reports
from ujumbe.services.routing import PasswordBox, Router, Routing, RoutingWatcher
from ujumbe.services.sealing import Box
from ujumbe.services.senders import Senders
from ujumbe.services.templates import Templates
from ujumbe.services.verifications import Verifications
from ujumbe.store import Store, create_store, now_ms
from ujumbe.workers.callbacks import CallbackSender
from ujumbe.workers.dispatch import Dispatcher
from ujumbe.workers.schedules import Sweeper

log = logging.getLogger("ujumbe")


class Platform:
    def __init__(self, settings: Settings, *, channels: list[Channel] | None = None) -> None:
        self.settings = settings
        self.store: Store = create_store(settings.database_url, settings.data_dir)
        secret = settings.load_secret()
        self.accounts = Accounts(
            self.store, secret, access_ttl_s=settings.access_token_ttl_s, refresh_ttl_s=settings.refresh_token_ttl_s
        )
        self.templates = Templates(self.store)
        self.senders = Senders(self.store)
        self.premium = Premium(self.store, PasswordBox(secret, b"ujumbe/premium-api-tokens/v1"))
        self.credits = Credits(self.store)
        self.callback_log = CallbackLog(self.store)
        self.reports = Reports(self.store)
        self.web_sessions = WebSessions(self.store, secret)  # the web dashboard's logins
        self.dashboard = Dashboard(self.store)
        self.simulator: Simulator | None = None
        chans = list(channels or [])
        if settings.simulator and not any(c.kind == "sms" for c in chans):
            self.simulator = Simulator(receipt_delay_ms=settings.sim_receipt_delay_ms)
            chans.append(self.simulator)
        self.channels = {c.name: c for c in chans}
        # texts with one-time codes are kept encrypted until the dispatcher sends them
        self.sealed_texts = Box(secret, "sealed-texts")
        self.messaging = Messaging(
            self.store, validity_s=settings.validity_s, channels={c.kind for c in chans} or {"sms"},
            seal=self.sealed_texts.seal,
        )
        self.verifications = Verifications(self.store, self.messaging, secret)
        # Operator connectors and routes come from the database (services/routing.py).
        self.routing = Routing(self.store, PasswordBox(secret))
        self.router = Router(self.channels, store=self.store, box=self.routing.box)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.role = "api"
        self.dispatcher: Dispatcher | None = None
        self.smpp: Any = None  # the SMPP server customers bind to (dialects.smpp.SmppGateway), in worker roles

    async def open(self) -> None:
        """Open the store and bring its schema up to date."""
        await self.store.open()
        applied = await self.store.migrate()
        if applied:
            log.info("applied migrations %s", applied)
        sealed = await self.premium.seal_plaintext_tokens()  # rows from before migration 0011
        if sealed:
            log.info("encrypted the api_token of %d premium services", sealed)
        import ujumbe.dialects  # noqa: F401  (each dialect registers its callback formats)

    async def start(self, role: str = "all") -> None:
        self.role = role
        if self.store.dialect == "sqlite" and not self.settings.parent_holds_lock:
            self.lock_data_dir(role)
        await self.open()
        if role in ("worker", "all"):
            await self.start_workers()
        if not await self.store.read(lambda tx: tx.fetchval("SELECT count(*) FROM accounts")):
            log.info(
                "no accounts yet; create one with: ujumbe accounts create --name NAME --email EMAIL "
                "--password PASSWORD --credits 100"
            )

    async def start_workers(self) -> None:
        if self.store.dialect == "sqlite" and self.role == "all":
            # This process owns the embedded store (see lock_data_dir): any lease
            # left behind is from a run that died, so its messages are due now.
            await self.store.run(
                lambda tx: tx.execute(
                    "UPDATE outbox SET due_at = ?, lease_owner = NULL WHERE lease_owner IS NOT NULL", now_ms()
                )
            )
        for channel in self.channels.values():
            await channel.start(self.reports)
        routing_watcher = RoutingWatcher(self.store, self.router, poll_s=self.settings.routing_poll_s)
        await self.router.start(self.reports)  # before dispatch: the first sends must see the routes
        self.dispatcher = Dispatcher(self.store, self.router, unseal=self.sealed_texts.open)
        transports = await self._start_smpp()
        sender = CallbackSender(
            self.store, self._webhook_secret, services=self, allow_private=self.settings.allow_private_callbacks,
            delay_scale=self.settings.callback_delay_scale, transports=transports,
        )
        for name, worker in (
            ("dispatch", self.dispatcher),
            ("reports", self.reports),
            ("callbacks", sender),
            ("sweeper", Sweeper(self.store)),
            ("routing", routing_watcher),
        ):
            self._tasks.append(asyncio.create_task(self._supervise(name, worker), name=name))
        if self.simulator is not None:
            await self._replay_simulator()

    def lock_data_dir(self, role: str) -> None:
        """A role-``all`` server owns the embedded database alone: it takes
        back every lease at start, which would double-send if another process
        were working. Separate ``api`` and ``worker`` processes on one machine
        may share it (their leases simply expire)."""
        path = Path(self.store.path).with_suffix(".lock")  # type: ignore[attr-defined]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(path, "a+")  # noqa: SIM115  (held until the process ends)
        try:
            fcntl.flock(self._lock_file, (fcntl.LOCK_EX if role == "all" else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise RuntimeError(
                f"Another Ujumbe server is running on {self.store.path}. A server with --role all uses the "  # type: ignore[attr-defined]
                "embedded database alone; stop it, use another --data-dir, run --role api and --role worker "
                "processes instead, or share PostgreSQL (UJUMBE_DATABASE_URL)."
            ) from None

    async def _supervise(self, name: str, worker: Any) -> None:
        """Restart a worker that crashed; the work it held is leased, not lost."""
        while not self._stop.is_set():
            try:
                await worker.run(self._stop)
                return
            except Exception:
                log.exception("worker %s crashed; restarting in 1 s", name)
                await asyncio.sleep(1)

    async def _replay_simulator(self) -> None:
        """A real SMSC keeps receipts it could not deliver and sends them after
        a rebind; the in-process simulator does the same after a restart."""
        sim = self.simulator
        assert sim is not None
        rows = await self.store.read(
            lambda tx: tx.fetch(
                "SELECT p.operator_id, m.recipient, m.id, m.parts FROM message_parts p "
                "JOIN messages m ON m.id = p.message_id WHERE p.connector = ? AND p.state = 'submitted'",
                sim.name,
            )
        )
        for op_id, recipient, _mid, _parts in rows:
            sim.replay(op_id, recipient)

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.smpp is not None:
            await self.smpp.stop()
        await self.router.close()
        for channel in self.channels.values():
            await channel.stop()
        await self.store.close()
        if getattr(self, "_lock_file", None) is not None:
            self._lock_file.close()  # releases the lock

    async def _webhook_secret(self, account_id: str) -> str:
        account = await self.accounts.get(account_id)
        return self.accounts.webhook_secret(account.key_seed)

    async def check_callback_url(self, url: str) -> str:
        return await asyncio.to_thread(check_target, url, allow_private=self.settings.allow_private_callbacks)

    async def _start_smpp(self) -> dict[str, Any]:
        """Start the customers' SMPP server; its deliver_sm is the transport for smpp: callbacks."""
        if self.settings.smpp_port is None:
            return {}
        from ujumbe.dialects.smpp import SmppGateway

        gateway = SmppGateway(self, self.settings.smpp_host, self.settings.smpp_port)
        try:
            await gateway.start()
        except OSError as exc:
            # Several workers on one host cannot share the port: the others run
            # without SMPP (and leave smpp: callbacks to the one that has it).
            log.error("SMPP server not started on %s:%s: %s", self.settings.smpp_host, self.settings.smpp_port, exc)
            return {}
        self.smpp = gateway
        return {"smpp": gateway.deliver}

    @property
    def smpp_port(self) -> int | None:
        """The port the SMPP server listens on (None when it does not run here)."""
        return self.smpp.port if self.smpp is not None else None
