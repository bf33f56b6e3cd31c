"""The dispatch worker: claims queued messages and hands them to channels.

Claims are leases (``outbox.due_at`` pushed forward), so messages a dead
worker held fall due again and another worker takes them. Sends run
concurrently up to each channel's ``max_in_flight``; their outcomes are
recorded in batches. Transient failures come back with exponential backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
import weakref
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from ujumbe.channels.base import Channel, Outbound, SendError, Submitted
from ujumbe.core.states import State
from ujumbe.core.timefmt import iso
from ujumbe.services.lifecycle import Writes, transition
from ujumbe.services.messaging import SEALED_BODY
from ujumbe.services.reports import apply_early_receipts
from ujumbe.services.routing import Router  # the routing rules live there; re-exported
from ujumbe.store import Store, Tx, now_ms
from ujumbe.aio import wait_any
from ujumbe.workers.recorder import Recorder
from ujumbe.store import messages as q

log = logging.getLogger("ujumbe.dispatch")


# Outcomes are recorded this many at a time: small, because on SQLite a unit
# runs on the event loop and a long one stalls the API.
RECORD_BATCH = 250
# Sends whose outcome is not recorded yet, at most. Past it no more are
# claimed: a recorder that falls behind would otherwise let them pile up in
# memory (sent, but resent by another worker if this one died), and nearly
# every receipt would come before its submit's record and be parked. Not
# tighter: at 2 batches a 100,000-recipient drain on SQLite took 66 s
# instead of 41-50 s (the claims then wait on the recorder).
MAX_UNRECORDED = 8 * RECORD_BATCH
# Claim up to this many windows' worth of sends: a claim is a write that waits
# its turn at the store and its commit, and a fast SMSC has answered a whole
# window long before. The extra sends wait on their channel's semaphore.
CLAIM_AHEAD = 4


def backoff_ms(attempt: int) -> int:
    """1 s, 2 s, 4 s ... capped at 5 minutes, with jitter so retries spread out."""
    base = min(1000 * 2 ** max(attempt - 1, 0), 300_000)
    return int(base * random.uniform(0.8, 1.2))


@dataclass(slots=True)
class Outcome:
    message_id: int
    attempts: int
    channel: str
    submitted: Submitted | None = None
    error: SendError | None = None


class Dispatcher:
    def __init__(
        self, store: Store, router: Router, *, batch: int = 200, lease_ms: int = 30_000,
        max_attempts: int = 10, poll_s: float = 1.0, unseal: Callable[[str], str] | None = None,
    ) -> None:
        self.store = store
        self.router = router
        self.batch = batch
        self.lease_ms = lease_ms
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.unseal = unseal  # opens a text kept sealed at rest (one-time codes)
        self.owner = f"w-{uuid.uuid4().hex[:12]}"
        self._in_flight = 0
        self._slot_free = asyncio.Event()
        # the slot_free wake: a written batch makes room under MAX_UNRECORDED
        self._outcomes: Recorder[Outcome] = Recorder(
            store, self._record, batch=RECORD_BATCH, what="send outcomes", recorded=self._slot_free.set,
        )
        self._sems: weakref.WeakKeyDictionary[Channel, asyncio.Semaphore] = weakref.WeakKeyDictionary()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def capacity(self) -> int:
        return CLAIM_AHEAD * sum(c.max_in_flight for c in self.router.channels.values()) or 1

    async def run(self, stop: asyncio.Event) -> None:
        wake = self.store.listener("outbox")
        recorder = asyncio.create_task(self._outcomes.run(stop, lambda: bool(self._tasks)), name="dispatch-recorder")
        try:
            while not stop.is_set():
                free = min(self.capacity - self._in_flight, MAX_UNRECORDED - len(self._outcomes))
                if free <= 0:
                    self._slot_free.clear()
                    await wait_any(self._slot_free, stop, timeout=self.poll_s)
                    continue
                wake.clear()
                claimed = await self.store.run(lambda tx: self._claim(tx, min(free, self.batch)))
                if not claimed:
                    await wait_any(wake, stop, timeout=self.poll_s)
                    continue
                for msg, attempts in claimed:
                    self._in_flight += 1
                    task = asyncio.create_task(self._send(msg, attempts))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._outcomes.wake()
            await recorder
            # hand back what we leased but never sent, for the next worker
            await self.store.run(lambda tx: q.outbox_release(tx, self.owner))

    async def _claim(self, tx: Tx, limit: int) -> list[tuple[dict[str, Any], int]]:
        now = now_ms()
        leased = await q.claim(tx, self.owner, now, self.lease_ms, limit)
        if not leased:
            return []
        attempts = dict(leased)
        out = []
        done: list[int] = []
        writes = Writes()
        for msg in await q.messages_by_ids(tx, list(attempts)):
            state = State(msg["state"])
            if state.final or state == State.SUBMITTED:  # expired or already sent: nothing to do
                done.append(msg["id"])
            elif msg["expires_at"] < now:
                await transition(tx, msg, State.EXPIRED, now, detail="validity period ended before sending", writes=writes)
                done.append(msg["id"])
            else:
                out.append((msg, attempts[msg["id"]]))
        await writes.flush(tx)
        if done:
            await q.outbox_done(tx, done)
        return out

    async def _send(self, msg: dict[str, Any], attempts: int) -> None:
        channel: Channel | None = None
        try:
            channel = self.router.route(msg)  # SendError when nothing can carry it (now)
            # per channel object: a connector restarted with a new window gets a new semaphore
            sem = self._sems.get(channel)
            if sem is None:
                sem = self._sems[channel] = asyncio.Semaphore(channel.max_in_flight)
            meta = json.loads(msg["meta"]) if msg["meta"] else {}
            sealed = meta.pop(SEALED_BODY, None)
            body = self.unseal(sealed) if sealed and self.unseal else msg["body"]
            outbound = Outbound(
                message_id=str(msg["id"]), account_id=msg["account_id"], sender=msg["sender"] or "",
                recipient=msg["recipient"], body=body, encoding=msg["encoding"], parts=msg["parts"],
                validity_s=max(1, (msg["expires_at"] - now_ms()) // 1000), network=msg["network"], meta=meta,
            )
            with self.router.sending(channel):  # a connector being removed waits for this send
                async with sem:
                    submitted = await channel.send(outbound)
            outcome = Outcome(msg["id"], attempts, channel.name, submitted=submitted)
        except SendError as exc:
            outcome = Outcome(msg["id"], attempts, channel.name if channel else "", error=exc)
        except Exception as exc:  # never lose a message to a bug: retry it
            log.exception("dispatch of message %s crashed", msg["id"])
            outcome = Outcome(msg["id"], attempts, channel.name if channel else "", error=SendError(str(exc), transient=True))
        finally:
            self._in_flight -= 1
            self._slot_free.set()
        self._outcomes.add(outcome)

    async def _record(self, tx: Tx, batch: list[Outcome]) -> None:
        now = now_ms()
        msgs = {m["id"]: m for m in await q.messages_by_ids(tx, [o.message_id for o in batch])}
        done: list[int] = []
        parts: list[tuple[int, int, str, str, str, int]] = []
        submitted_ids: dict[str, list[str]] = {}
        retries: list[tuple[int, int]] = []
        writes = Writes()
        for o in batch:
            msg = msgs.get(o.message_id)
            if msg is None:
                continue
            if o.submitted is not None:
                ids = o.submitted.operator_ids
                for n, op_id in enumerate(ids, 1):
                    parts.append((o.message_id, n, op_id, o.channel, State.SUBMITTED.value, now))
                submitted_ids.setdefault(o.channel, []).extend(ids)
                await transition(
                    tx, msg, State.SUBMITTED, now, detail=f"{o.channel}: {','.join(ids)}"[:300],
                    extra={"connector": o.channel}, writes=writes,
                )
                done.append(o.message_id)
            else:
                err = o.error
                assert err is not None
                if err.transient and o.attempts < self.max_attempts:
                    due = now + backoff_ms(o.attempts)
                    retries.append((due, o.message_id))
                    writes.event(o.message_id, now, "retry", f"attempt {o.attempts} failed ({err.reason}); next at {iso(due)}"[:300])
                else:
                    state = err.state if not err.transient else State.FAILED
                    await transition(
                        tx, msg, state, now, detail=err.reason[:300], error_code=err.code or None,
                        reason=err.reason[:200], writes=writes,
                    )
                    done.append(o.message_id)
        await writes.flush(tx)
        if parts:
            await q.insert_parts(tx, parts)
        if retries:
            await q.outbox_retries(tx, retries)
        if done:
            await q.outbox_done(tx, done)
        # after the flush: a receipt that came early reads the message as submitted
        for channel, ids in submitted_ids.items():
            await apply_early_receipts(tx, channel, ids)
