"""Wiring: builds the store, services, channels and workers for one process.

``Platform`` is the composition root. Entry points (the HTTP app, the CLI,
tests) make one, ``start`` it with a role, and reach services through it;
nothing below this module knows how the pieces were put together.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path
from typing import Any

from ujumbe.channels.base import Channel
from ujumbe.channels.email.sim import EmailSimulator
from ujumbe.channels.email.smtp import smtp_from_url
from ujumbe.channels.simulator import Simulator
from ujumbe.channels.speech import decode as audio_decode
from ujumbe.channels.speech import engine as tts_engine
from ujumbe.channels.voice import VoiceChannel, call_receipt
from ujumbe.channels.voice.sim import CallSimulator
from ujumbe.config import Settings, private_dir
from ujumbe.core.calls import CallResult
from ujumbe.core.errors import NotFound
from ujumbe.services.accounts import Accounts
from ujumbe.services.callbacks import CallbackLog, check_target
from ujumbe.services.campaigns import Campaigns, Jobs
from ujumbe.services.credits import Credits
from ujumbe.services.emails import SendingDomains
from ujumbe.services.dashboard import Dashboard, WebSessions
from ujumbe.services.messaging import Messaging
from ujumbe.services.phone_numbers import PhoneNumbers
from ujumbe.services.premium import Premium
from ujumbe.services.reports import Reports
from ujumbe.services.routing import PasswordBox, Router, Routing, RoutingWatcher
from ujumbe.services.sealing import Box
from ujumbe.services.senders import Senders
from ujumbe.services.speech import Speech
from ujumbe.services.templates import Templates
from ujumbe.services.verifications import Verifications
from ujumbe.metrics import ConnectorGauges
from ujumbe.store import Store, create_store, now_ms
from ujumbe.workers.callbacks import CallbackSender
from ujumbe.workers.campaigns import CampaignSender, JobRunner
from ujumbe.store.messages import insert_events, outbox_take_back, worker_unregister
from ujumbe.workers.dispatch import TAKEN_OVER, Dispatcher
from ujumbe.workers.retention import Retention
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
        # Email: sending domains and their DKIM keys; a relay (UJUMBE_SMTP_URL) or the email simulator
        self.domains = SendingDomains(self.store, Box(secret, "dkim-keys"))
        self.email_simulator: EmailSimulator | None = None
        if not any(c.kind == "email" for c in chans):
            if settings.smtp_url:
                chans.append(smtp_from_url(settings.smtp_url, keys=self.domains.key,
                                           bounce_domain=settings.bounce_domain or None))
            elif settings.simulator:
                self.email_simulator = EmailSimulator(receipt_delay_ms=settings.sim_receipt_delay_ms)
                chans.append(self.email_simulator)
        # Speech for calls: text-to-speech (UJUMBE_TTS_ENGINE) and uploaded audio files;
        # the call simulator on the embedded default, SIP trunks as connectors (routing)
        self.speech = Speech(self.store, tts_engine(settings.tts_engine), audio_decode.decode)
        self.voice_simulator: VoiceChannel | None = None
        if settings.simulator and not any(c.kind == "voice" for c in chans):
            self.voice_simulator = VoiceChannel(CallSimulator(speed=settings.sim_call_speed), name="voice-simulator",
                                                speech=self.speech)
            chans.append(self.voice_simulator)
        self.channels = {c.name: c for c in chans}
        # texts with one-time codes are kept encrypted until the dispatcher sends them
        self.sealed_texts = Box(secret, "sealed-texts")
        # Every kind is accepted: an API process runs no channels, and the workers'
        # connectors (SMTP, SIP) come from the database; nothing to carry it: no_route.
        self.messaging = Messaging(
            self.store, validity_s=settings.validity_s, channels={c.kind for c in chans} | {"sms", "email", "voice"},
            seal=self.sealed_texts.seal, senders=self.senders, urls=self.accounts.callback_urls, domains=self.domains,
        )
        self.messaging.audio_ms = self._audio_ms
        self.verifications = Verifications(self.store, self.messaging, secret)
        self.campaigns = Campaigns(self.store, self.messaging, default_rate=settings.campaign_rate)
        self.campaigns.speech = self.speech
        self.campaigns.hang_up = self._hang_up
        self.campaigns.live_calls = lambda: sum(c.active_calls for c in self._voice_channels())
        # calls the lines here hold at once (None: no voice channel in this process, no cap)
        self.campaigns.call_capacity = lambda: sum(c.max_in_flight for c in self._voice_channels()) or None
        self.jobs = Jobs(self.store, self.campaigns, self.accounts)
        self.phone_numbers = PhoneNumbers(self.store)
        # Operator connectors and routes come from the database (services/routing.py).
        self.routing = Routing(self.store, PasswordBox(secret))
        self.router = Router(self.channels, store=self.store, box=self.routing.box,
                             connector_options={"rebind_max_s": settings.smpp_rebind_max_s})
        self.router.email_keys = self.domains.key
        self.router.speech = self.speech
        self.router.bounce_domain = settings.bounce_domain or None
        self.bounces: Any = None  # the DSN listener (channels.email.bounces), when its port is set
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # each supervised worker's state, for /readyz: "running", or why not
        self.worker_states: dict[str, str] = {}
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
        if not self.settings.parent_holds_lock:  # under `serve --processes N` the parent says it, once
            await self.log_first_steps()

    async def log_first_steps(self) -> None:
        """With no account yet, log the exact command that creates one against
        this server's data (its --data-dir or database, see Settings.command)."""
        if await self.store.read(lambda tx: tx.fetchval("SELECT count(*) FROM accounts")):
            return
        secret = " (in a shell with this server's UJUMBE_SECRET_KEY)" if os.environ.get("UJUMBE_SECRET_KEY") else ""
        log.info(
            "no accounts yet; create one with: %s accounts create --name NAME --email EMAIL --credits 100%s",
            self.settings.command(), secret,
        )

    async def start_workers(self) -> None:
        if self.store.dialect == "sqlite" and self.role == "all":
            # This process owns the embedded store (see lock_data_dir): any lease
            # left behind is from a run that died, so its messages are due now.
            await self.store.run(self._take_back_leases)
        for channel in self.channels.values():
            await channel.start(self.router.counted(self.reports))  # receipts counted for the operator's board
        routing_watcher = RoutingWatcher(self.store, self.router, poll_s=self.settings.routing_poll_s)
        await self.router.start(self.reports)  # before dispatch: the first sends must see the routes
        st = self.settings
        self.dispatcher = Dispatcher(
            self.store, self.router, max_attempts=st.max_attempts, retry_base_ms=st.retry_base_ms,
            retry_cap_ms=st.retry_cap_ms, wait_recheck_s=st.bind_wait_recheck_s, heartbeat_s=st.worker_heartbeat_s,
            dead_s=st.worker_dead_s, unseal=self.sealed_texts.open,
        )
        # A receipt for a send not recorded yet waits for that record, rather
        # than match an older part with the same id (SMSCs reuse ids).
        self.reports.awaiting_record = self.dispatcher.awaiting_record
        self.dispatcher.on_recorded.append(self.reports.submits_recorded)
        sweeper = Sweeper(self.store, expire_every_s=self.settings.expire_every_s)
        sweeper.awaiting_record = self.dispatcher.awaiting_record
        transports = await self._start_smpp()
        sender = CallbackSender(
            self.store, self._webhook_secret, services=self, allow_private=self.settings.allow_private_callbacks,
            delay_scale=self.settings.callback_delay_scale, transports=transports,
            open_url=self.accounts.callback_urls.open,
        )
        for name, worker in (
            ("dispatch", self.dispatcher),
            ("reports", self.reports),
            ("callbacks", sender),
            ("sweeper", sweeper),
            ("routing", routing_watcher),
            ("campaigns", CampaignSender(self.campaigns, self.accounts)),
            ("jobs", JobRunner(self.jobs)),
            ("metrics", ConnectorGauges(self.router)),
            *((("retention", Retention(self.store, self.settings.retention_days)),)
              if self.settings.retention_days > 0 else ()),
        ):
            self._tasks.append(asyncio.create_task(self._supervise(name, worker), name=name))
        if self.simulator is not None:
            await self._replay_simulator()
        if self.email_simulator is not None:
            await self._replay_simulator(self.email_simulator)
        if self.voice_simulator is not None and self.store.dialect == "sqlite" and self.role == "all":
            await self._end_lost_calls(self.voice_simulator)
        if self.settings.bounce_port is not None:
            from ujumbe.channels.email.bounces import BounceListener

            self.bounces = BounceListener(self.store, self.reports, self.settings.bounce_host, self.settings.bounce_port)
            try:
                await self.bounces.start()
            except OSError as exc:
                log.error("bounce listener not started on %s:%s: %s", self.settings.bounce_host,
                          self.settings.bounce_port, exc)
                self.bounces = None

    @staticmethod
    async def _take_back_leases(tx: Any) -> None:
        ids = await outbox_take_back(tx, now_ms())
        await worker_unregister(tx)  # every worker that registered before is gone
        at = now_ms()
        await insert_events(tx, [(mid, at, "retry", f"{TAKEN_OVER} (a restart)") for mid in ids])
        if ids:
            log.warning("took back %d messages leased by the previous run; they may repeat if they were in flight", len(ids))

    def lock_data_dir(self, role: str) -> None:
        """A role-``all`` server owns the embedded database alone: it takes
        back every lease at start, which would double-send if another process
        were working. Separate ``api`` and ``worker`` processes on one machine
        may share it (their leases simply expire)."""
        path = Path(self.store.path).with_suffix(".lock")  # type: ignore[attr-defined]
        private_dir(path.parent)
        self._lock_file = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "a+")  # held until the process ends
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
        try:
            while not self._stop.is_set():
                self.worker_states[name] = "running"
                try:
                    await worker.run(self._stop)
                    return
                except Exception as exc:
                    self.worker_states[name] = f"crashed ({type(exc).__name__}); restarting"
                    log.exception("worker %s crashed; restarting in 1 s", name)
                    await asyncio.sleep(1)
        finally:
            self.worker_states[name] = "stopped"

    def workers_not_running(self) -> dict[str, str]:
        """Supervised workers that are not running now, with why (for /readyz)."""
        down = {name: state for name, state in self.worker_states.items() if state != "running"}
        for task in self._tasks:
            if task.done() and task.get_name() not in self.worker_states:
                down[task.get_name()] = "stopped"
        return down

    async def _replay_simulator(self, sim: Any = None) -> None:
        """A real SMSC keeps receipts it could not deliver and sends them after
        a rebind; the in-process simulator does the same after a restart."""
        sim = sim or self.simulator
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

    async def _end_lost_calls(self, channel: VoiceChannel) -> None:
        """Simulated calls a previous run died during (this server is the embedded
        store's only one): their line is gone. Each ends terminated/shutdown,
        not answered as far as we know: failed, and refunded."""
        rows = await self.store.read(lambda tx: tx.fetch(
            "SELECT operator_id FROM message_parts WHERE connector = ? AND state = 'submitted'", channel.name))
        for (op_id,) in rows:
            now = now_ms()
            result = CallResult(call_id=op_id, reason="shutdown", sip_phrase="the server stopped during the call",
                                started_at=now, ended_at=now)
            await self.reports.receipt(call_receipt(channel.name, op_id, result))

    async def stop(self) -> None:
        # Calls end first (terminated/shutdown), while the workers still record their outcomes.
        voice = [c for c in {**self.channels, **self.router.connectors}.values() if isinstance(c, VoiceChannel)]
        await asyncio.gather(*(c.drain() for c in voice), return_exceptions=True)
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.smpp is not None:
            await self.smpp.stop()
        if self.bounces is not None:
            await self.bounces.stop()
        await self.router.close()
        for channel in self.channels.values():
            await channel.stop()
        await self.store.close()
        if getattr(self, "_lock_file", None) is not None:
            self._lock_file.close()  # releases the lock

    async def _audio_ms(self, account_id: str, audio_id: str) -> int | None:
        """An account's uploaded audio's length in ms (the hold for its calls); None: no such audio."""
        if not str(audio_id).isascii() or not str(audio_id).isdigit() or len(str(audio_id)) > 18:
            return None  # not an id the store could hold
        try:
            row = await self.speech.get_audio(account_id, int(audio_id))
        except NotFound:
            return None
        return int(round(float(row["seconds"]) * 1000))

    async def _webhook_secret(self, account_id: str) -> str:
        account = await self.accounts.get(account_id)
        return self.accounts.webhook_secret(account.key_seed)

    async def check_callback_url(self, url: str) -> str:
        try:
            # A resolver that hangs (no DNS reachable) must not hold the request:
            # a name not resolved in time is accepted like one that does not
            # resolve, and the sender checks each address it connects to anyway.
            return await asyncio.wait_for(
                asyncio.to_thread(check_target, url, allow_private=self.settings.allow_private_callbacks),
                self.settings.callback_resolve_timeout_s,
            )
        except TimeoutError:
            return url

    async def _start_smpp(self) -> dict[str, Any]:
        """Start the customers' SMPP server; its deliver_sm is the transport for smpp: callbacks."""
        if self.settings.smpp_port is None:
            return {}
        from ujumbe.dialects.smpp import SmppGateway

        gateway = SmppGateway(self, self.settings.smpp_host, self.settings.smpp_port)
        try:
            await gateway.start()
        except OSError as exc:
            # A server that runs on without the port it was told to listen on
            # fails its SMPP customers quietly: stop (`serve` checks the port
            # before anything else; this is the race after that check).
            raise RuntimeError(
                f"cannot listen for SMPP on {self.settings.smpp_host}:{self.settings.smpp_port}: "
                f"{exc.strerror or exc}; UJUMBE_SMPP_PORT changes the port (off: no SMPP server)"
            ) from None
        self.smpp = gateway
        return {"smpp": gateway.deliver}

    def _voice_channels(self) -> list[VoiceChannel]:
        return [c for c in {**self.channels, **self.router.connectors}.values() if isinstance(c, VoiceChannel)]

    def _hang_up(self, message_ids: Any) -> int:
        """End these calls where this process placed them (a campaign stopped)."""
        return sum(c.hang_up(str(mid), "stopped") for mid in message_ids for c in self._voice_channels())

    @property
    def smpp_port(self) -> int | None:
        """The port the SMPP server listens on (None when it does not run here)."""
        return self.smpp.port if self.smpp is not None else None

