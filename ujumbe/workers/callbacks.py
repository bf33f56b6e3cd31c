"""The callback worker: delivers queued callbacks to client URLs.

Each row is POSTed with a Standard Webhooks signature. A callback counts as
delivered only when the dialect's acknowledgement rule says so (a 2xx, or
Tilil's ``OK`` body); otherwise it is retried on the dialect's schedule and,
when the schedule runs out, kept as ``failed`` where the client can see and
replay it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from ujumbe.services import callbacks
from ujumbe import logs, metrics
from ujumbe.logs import message_id_var
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import callbacks as callbacks_q
from ujumbe.workers.webhook_client import HttpError, Resolver, WebhookClient, resolve
from ujumbe.aio import wait_any
from ujumbe.workers.recorder import Recorder

log = logging.getLogger("ujumbe.callbacks")

# Delivers one callback row whose URL is "<scheme>:..." by other means than
# HTTP (e.g. "smpp:<account>" as a deliver_sm); True when the client acknowledged.
Transport = Callable[[dict[str, Any]], Awaitable[bool]]


class CallbackSender:
    def __init__(
        self, store: Store, secret_for: Any, *, services: Any = None, allow_private: bool = False, concurrency: int = 200,
        batch: int = 500, lease_ms: int = 60_000, timeout_s: float = 10.0, poll_s: float = 1.0,
        delay_scale: float = 1.0, transports: dict[str, Transport] | None = None,
        open_url: Callable[[str], str] | None = None, resolver: Resolver = resolve,
    ) -> None:
        self.store = store
        self.transports = dict(transports or {})
        self.secret_for = secret_for  # async (account_id) -> webhook secret
        self.services = services  # handed to dialects' after-ack hooks
        self.allow_private = allow_private
        self.open_url = open_url or (lambda url: url)  # a stored URL's sealed password, opened to send
        self.resolver = resolver
        self.concurrency = concurrency
        self.batch = batch
        self.lease_ms = lease_ms
        self.poll_s = poll_s
        self.delay_scale = delay_scale  # tests shrink the retry schedule
        self.owner = f"cb-{uuid.uuid4().hex[:12]}"
        self.timeout_s = timeout_s
        # Our own small client rather than httpx (whose pool scans every
        # connection on each request: ~200 callbacks/s at 200 connections) or
        # aiohttp (~100 us of CPU per callback): see webhook_client.
        self._http: WebhookClient | None = None
        self._secrets: dict[str, tuple[float, str]] = {}
        # (row, HTTP status, answer or error, acknowledged, when it was sent, latency ms)
        self._results: Recorder[tuple[dict[str, Any], int | None, str, bool, int, int]] = Recorder(
            store, self._record, batch=1000, what="callback results", recorded=self._recorded,
        )
        self._unblocked = False  # the last batch recorded ended callbacks that others may wait for
        self._in_flight = 0
        self._slot_free = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event) -> None:
        wake = self._wake = self.store.listener("callbacks")
        recorder = asyncio.create_task(self._results.run(stop, lambda: bool(self._tasks)))
        try:
            while not stop.is_set():
                free = self.concurrency - self._in_flight
                if free <= 0:
                    self._slot_free.clear()
                    await wait_any(self._slot_free, stop, self.poll_s)
                    continue
                wake.clear()
                rows = await self.store.run(lambda tx: self._claim(tx, min(free, self.batch)))
                if not rows:
                    await wait_any(wake, stop, self.poll_s)
                    continue
                for row in rows:
                    self._in_flight += 1
                    task = asyncio.create_task(self._deliver(row))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._results.wake()
            await recorder
            if self._http is not None:
                await self._http.close()

    def _client(self) -> WebhookClient:
        if self._http is None:
            self._http = WebhookClient(
                limit=self.concurrency, timeout_s=self.timeout_s, resolver=self.resolver,
                allow_address=None if self.allow_private else callbacks.public_address,
            )
        return self._http

    async def _secret(self, account_id: str) -> str:
        """The account's signing secret, re-derived at most once a minute."""
        hit = self._secrets.get(account_id)
        if hit is None or time.monotonic() - hit[0] > 60:
            hit = (time.monotonic(), await self.secret_for(account_id))
            self._secrets[account_id] = hit
        return hit[1]

    async def _claim(self, tx: Tx, limit: int) -> list[dict[str, Any]]:
        # Only rows this process can deliver: an "smpp:" row is left to a
        # process that runs the SMPP server rather than failed here.
        schemes = ["http%", *(f"{scheme}:%" for scheme in self.transports)]
        return await callbacks_q.claim(tx, self.owner, now_ms(), self.lease_ms, schemes, limit)

    async def _deliver(self, row: dict[str, Any]) -> None:
        message_id_var.set(row["message_id"])  # this task's log lines name the message (ujumbe.logs)
        status: int | None = None
        body = ""
        ok = False
        sent_at = now_ms()
        started = time.perf_counter()
        transport = self.transports.get(row["url"].partition(":")[0])
        try:
            if transport is not None:
                ok = await transport(row)
                if not ok:
                    body = "not acknowledged: no receiving bind, or the client refused it"
            else:
                fmt = callbacks.FORMATS.get(row["dialect"]) or callbacks.Format()
                secret = await self._secret(row["account_id"])
                payload = row["payload"] if fmt.prepare is None else await fmt.prepare(self.services, row)
                headers = callbacks.signed_headers(secret, row["id"], payload, fmt.content_type)
                # redirects are not followed: one could point anywhere, including inside our network
                # the client checks each address it connects to (see WebhookClient.allow_address)
                status, answer = await self._client().post(self.open_url(row["url"]), payload.encode(), headers)
                body = answer.decode("utf-8", "replace")[:2000]
                ok = fmt.acknowledged(status, body)
                if ok and fmt.after_ack is not None:
                    try:
                        await fmt.after_ack(self.services, row, status, body)
                    except Exception:
                        log.exception("after-ack hook failed for callback %s", row["id"])
        except (HttpError, OSError, TimeoutError) as exc:
            body = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        except Exception as exc:
            if transport is None:
                raise
            log.exception("%s transport failed on callback %s", row["url"].partition(":")[0], row["id"])
            body = f"{type(exc).__name__}: {exc}"[:500]
        finally:
            self._in_flight -= 1
            self._slot_free.set()
        took = time.perf_counter() - started
        metrics.callback_attempt(row["kind"], ok, took)
        if logs.tracing():
            # the host only: a URL's path and query may carry the client's tokens
            host = urlsplit(row["url"]).hostname or row["url"].partition(":")[0]
            logs.message_event(
                row["message_id"], "callback",
                f"{row['kind']} callback {row['id']} to {host}: {'acknowledged' if ok else 'not acknowledged'}"
                f"{f' (HTTP {status})' if status is not None else ''} in {took * 1000:.0f} ms, "
                f"attempt {row['attempts'] + 1}",
                callback_id=row["id"], kind=row["kind"], host=host, http_status=status, ok=ok,
                attempts=row["attempts"] + 1, ms=round(took * 1000, 1),
            )
        self._results.add((row, status, body, ok, sent_at, int(took * 1000)))

    def _recorded(self) -> None:
        if self._unblocked and self._wake is not None:
            # the callbacks that waited for these are due: claim them now, not
            # at the next poll (locally: a NOTIFY per batch would cost a round trip)
            self._wake.set()

    async def _record(self, tx: Tx, batch: list[tuple[dict[str, Any], int | None, str, bool, int, int]]) -> None:
        # One statement per outcome rather than one per row: on PostgreSQL
        # each would be a round trip and an executor run.
        now = now_ms()
        delivered: list[tuple[Any, ...]] = []
        failed: list[tuple[Any, ...]] = []
        retried: list[tuple[Any, ...]] = []
        held: list[tuple[int, int, int]] = []
        unblocked = False  # a message's next callback may be claimable now
        soonest: int | None = None
        tried: list[tuple[Any, ...]] = []  # each attempt kept on its own, for the client's pages
        shown: dict[str, str] = {}  # URL -> as kept: a batch mostly repeats an account's one or two URLs
        for row, status, body, ok, sent_at, latency_ms in batch:
            attempts = row["attempts"] + 1
            url = shown.get(row["url"])
            if url is None:
                url = shown[row["url"]] = callbacks.redacted(row["url"])
            tried.append((row["id"], row["account_id"], row["message_id"], sent_at, status,
                          (body[:500] or "no answer") if status is None and not ok else None, latency_ms,
                          body[:500] if status is not None else None, url))
            if ok:
                delivered.append((attempts, status, now, row["id"]))
                unblocked = unblocked or row["message_id"] is not None
                continue
            delays = callbacks.retry_delays(row["dialect"], row["kind"])
            error = f"HTTP {status}: {body}"[:500] if status is not None else body[:500]
            if attempts > len(delays):
                failed.append((attempts, status, error, row["id"]))
                unblocked = unblocked or row["message_id"] is not None
                log.warning("callback %s to %s given up after %d attempts", row["id"], url, attempts)
                metrics.callback_given_up(row["kind"])
            else:
                delay_ms = int(delays[attempts - 1] * 1000 * self.delay_scale)
                retried.append((attempts, status, error, now + delay_ms, row["id"]))
                if row["message_id"] is not None:
                    held.append((now + delay_ms, row["message_id"], row["id"]))
                soonest = delay_ms if soonest is None else min(soonest, delay_ms)
        await callbacks_q.delivered(tx, delivered)
        await callbacks_q.failed(tx, failed)
        await callbacks_q.retry_later(tx, retried)
        await callbacks_q.hold_successors(tx, held)
        await callbacks_q.record_attempts(tx, tried)
        self._unblocked = unblocked
        if soonest is not None and soonest < self.poll_s * 1000 and self._wake is not None:
            # due before the next poll: wake up for it rather than wait
            asyncio.get_running_loop().call_later(soonest / 1000, self._wake.set)

