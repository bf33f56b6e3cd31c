"""The dispatch worker: claims queued messages and hands them to channels.

Claims are leases (``outbox.lease_owner``, ``due_at`` pushed forward),
committed before anything is sent: the durable record of what may be in
flight. Each worker beats in ``dispatch_workers``; when one's beat stops for
``dead_s`` another takes its leases back at once (the lease running out is
only the fallback). Sends run concurrently up to each channel's
``max_in_flight`` (an SMPP connector's window per bind), and a send keeps its
slot until its outcome is durable, so a crash can repeat at most that many
sends per channel. Outcomes are recorded in batches. Transient refusals come
back with exponential backoff; a message that finds no bind up waits for one
without spending a try.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ujumbe import logs, metrics
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


# Failures that mean "no bind to send on", not a refusal by the operator: the
# message waits for a bind (or goes at once on another), and no try is spent.
# A SIP trunk that failed a call it could not place (503, Timer B) says
# "trunk_unavailable" when another trunk is up: the call goes there at once.
NO_BIND = frozenset({"no_connector_up", "unbound", "disconnected", "trunk_unavailable"})
# How often the worker looks whether a bind came up (an in-memory check).
BIND_WATCH_S = 0.2
# The event on a message sent again because the worker that held it died.
TAKEN_OVER = "sent again: the worker that held it stopped; the operator may get it twice if it was in flight"


def backoff_ms(attempt: int, base_ms: int = 1000, cap_ms: int = 300_000) -> int:
    """base, 2 x base, 4 x base ... capped, with jitter so retries spread out."""
    delay = min(base_ms * 2 ** max(attempt - 1, 0), cap_ms)
    return int(delay * random.uniform(0.8, 1.2))


@dataclass(slots=True)
class Outcome:
    message_id: int
    attempts: int
    channel: str
    submitted: Submitted | None = None
    error: SendError | None = None
    sent_at: int | None = None  # epoch ms the send began (None: when recorded)
    waiting_since: int | None = None  # it was already waiting for a bind
    slot: asyncio.Semaphore | None = None  # given back once this outcome is durable
    epoch: int = 0  # the worker's epoch at the claim (see Dispatcher._fenced)
    result: str = ""  # what recording it made of the message, for its log line (see _log_outcomes)
    due: int = 0  # when it goes again (retry)


class Dispatcher:
    def __init__(
        self, store: Store, router: Router, *, batch: int = 200, lease_ms: int = 120_000,
        max_attempts: int = 10, poll_s: float = 1.0, retry_base_ms: int = 1000, retry_cap_ms: int = 300_000,
        wait_recheck_s: float = 300.0, heartbeat_s: float = 1.0, dead_s: float = 5.0,
        unseal: Callable[[str], str] | None = None,
    ) -> None:
        self.store = store
        self.router = router
        self.batch = batch
        # Only the fallback for a worker that never registered: the heartbeat
        # hands a dead worker's leases on within ``dead_s``. Long, so a live but
        # slow worker's claims (waiting on a slow operator) are not sent twice.
        self.lease_ms = lease_ms
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.unseal = unseal  # opens a text kept sealed at rest (one-time codes)
        self.retry_base_ms = retry_base_ms
        self.retry_cap_ms = retry_cap_ms
        self.wait_recheck_ms = int(wait_recheck_s * 1000)
        self.heartbeat_s = heartbeat_s
        self.dead_s = dead_s
        self._name = f"w-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # the pid tells an operator which process
        self.owner = self._name  # the name it leases under; a new one after being taken for dead
        self._epoch = 0
        self._in_flight = 0
        self._slot_free = asyncio.Event()
        self._outcomes: Recorder[Outcome] = Recorder(
            store, self._record, batch=RECORD_BATCH, what="send outcomes", recorded=self._slot_free.set,
            done=self._recorded, parallel=2,
        )
        # Operator ids of sends whose outcome is not committed yet, by channel:
        # a receipt for one of them must wait for that record (see reports).
        self._unrecorded: dict[str, dict[str, int]] = {}
        self.on_recorded: list[Callable[[], None]] = []
        self._sems: weakref.WeakKeyDictionary[Channel, asyncio.Semaphore] = weakref.WeakKeyDictionary()
        self._tasks: set[asyncio.Task[None]] = set()

    def awaiting_record(self, channel: str, operator_id: str) -> bool:
        """A send on ``channel`` got this operator id and its record is not committed yet."""
        ids = self._unrecorded.get(channel)
        if ids and operator_id in ids:
            return True
        # a part of a message whose other parts are still being submitted
        answering = getattr(self.router.channel(channel), "answering", None)
        return bool(answering) and operator_id in answering  # type: ignore[operator]

    def _recorded(self, batch: list[Outcome]) -> None:
        """A batch of outcomes is durable: their sends can no longer repeat
        after a crash, so their channel slots may take new sends; receipts
        waiting for these records may be matched."""
        for o in batch:
            if o.slot is not None:
                o.slot.release()
            if o.submitted is None:
                continue
            ids = self._unrecorded.get(o.channel, {})
            for op_id in o.submitted.operator_ids:
                n = ids.get(op_id, 0) - 1
                if n > 0:
                    ids[op_id] = n
                else:
                    ids.pop(op_id, None)
        self._slot_free.set()  # a written batch makes room under MAX_UNRECORDED
        for notify in self.on_recorded:
            notify()
        if logs.tracing():
            self._log_outcomes(batch)

    @staticmethod
    def _log_outcomes(batch: list[Outcome]) -> None:
        """One line per recorded outcome, once it is durable (ujumbe.logs.message_event)."""
        for o in batch:
            if o.result == "submitted":
                assert o.submitted is not None
                ids = ",".join(o.submitted.operator_ids)
                logs.message_event(o.message_id, "submitted", f"on {o.channel} as {ids} (attempt {o.attempts})",
                                   connector=o.channel, operator_ids=ids, attempts=o.attempts)
            elif o.result and o.error is not None:
                err = o.error
                then = {"retry": f"; again at {iso(o.due)}", "waiting": "; waiting for a bind (not a try)",
                        "failed": "; given up"}.get(o.result, "")
                logs.message_event(o.message_id, "send_failed",
                                   f"on {o.channel or '-'} (attempt {o.attempts}): {err.code or 'error'}{then}",
                                   connector=o.channel or None, attempts=o.attempts, error_code=err.code or None,
                                   transient=err.transient, then=o.result)

    @property
    def capacity(self) -> int:
        router = self.router
        channels = router.channels
        if router.configured:
            # The connectors carry the traffic; a built-in channel only where a route names it.
            named = {r.connector for r in router.rules}
            channels = {n: c for n, c in channels.items() if n in router.connectors or n in named}
        return CLAIM_AHEAD * sum(c.max_in_flight for c in channels.values()) or 1

    async def run(self, stop: asyncio.Event) -> None:
        wake = self.store.listener("outbox")
        await self.store.run(lambda tx: q.worker_register(tx, self.owner, now_ms()))
        recorder = asyncio.create_task(self._outcomes.run(stop, lambda: bool(self._tasks)), name="dispatch-recorder")
        watcher = asyncio.create_task(self._watch(stop), name="dispatch-watch")
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
                for msg, attempts, waiting_since in claimed:
                    self._in_flight += 1
                    task = asyncio.create_task(self._send(msg, attempts, waiting_since, self._epoch))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._outcomes.wake()
            await recorder
            await watcher

            async def leave(tx: Tx) -> None:
                # hand back what we leased but never sent, for the next worker
                await q.outbox_release(tx, self.owner)
                await q.worker_unregister(tx, self.owner)

            await self.store.run(leave)

    async def _claim(self, tx: Tx, limit: int) -> list[tuple[dict[str, Any], int, int | None]]:
        now = now_ms()
        leased = await q.claim(tx, self.owner, now, self.lease_ms, limit)
        if not leased:
            return []
        claims = {mid: (attempts, waiting) for mid, attempts, waiting in leased}
        out = []
        done: list[int] = []
        writes = Writes()
        for msg in await q.messages_by_ids(tx, list(claims)):
            state = State(msg["state"])
            if state.final or state == State.SUBMITTED:  # expired or already sent: nothing to do
                done.append(msg["id"])
            elif msg["expires_at"] < now:
                await transition(tx, msg, State.EXPIRED, now, detail="validity period ended before sending", writes=writes)
                done.append(msg["id"])
            else:
                out.append((msg, *claims[msg["id"]]))
        await writes.flush(tx)
        if done:
            await q.outbox_done(tx, done)
        return out

    async def _send(self, msg: dict[str, Any], attempts: int, waiting_since: int | None, epoch: int) -> None:
        channel: Channel | None = None
        sent_at = now_ms()
        slot: asyncio.Semaphore | None = None
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
                await sem.acquire()
                slot = sem  # held until the outcome is durable (see _recorded)
                if epoch != self._epoch:
                    # Declared dead while this waited: another worker has the
                    # message now. Sending it too would only make a duplicate.
                    slot.release()
                    return
                submitted = await channel.send(outbound)
            outcome = Outcome(msg["id"], attempts, channel.name, submitted=submitted, sent_at=sent_at)
            ids = self._unrecorded.setdefault(channel.name, {})
            for op_id in submitted.operator_ids:
                ids[op_id] = ids.get(op_id, 0) + 1
        except SendError as exc:
            outcome = Outcome(msg["id"], attempts, channel.name if channel else "", error=exc)
        except Exception as exc:  # never lose a message to a bug: retry it
            log.exception("dispatch of message %s crashed", msg["id"])
            outcome = Outcome(msg["id"], attempts, channel.name if channel else "", error=SendError(str(exc), transient=True))
        finally:
            self._in_flight -= 1
            self._slot_free.set()
        outcome.waiting_since, outcome.slot, outcome.epoch = waiting_since, slot, epoch
        self._outcomes.add(outcome)

    # --- liveness: heartbeats, taking over a dead worker's leases, binds coming up ---

    async def _watch(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        seen: dict[str, tuple[int, float]] = {}  # other worker -> (its beat, when we first saw that beat)
        last_ok = loop.time()
        next_beat = 0.0
        up = self._ups()
        version = self.router.version
        while not stop.is_set():
            t = loop.time()
            if t >= next_beat:
                next_beat = t + self.heartbeat_s
                try:
                    if t - last_ok > 2 * self.heartbeat_s:
                        # We could not look for a while either (the store or this
                        # process stalled): others' silence proves nothing yet.
                        seen.clear()
                    await self._heartbeat(seen)
                    last_ok = loop.time()
                except Exception:
                    log.exception("dispatch heartbeat failed; trying again")
            now_up = self._ups()
            if any(u and not up.get(name) for name, u in now_up.items()) or self.router.version != version:
                # A bind came up (or the routes changed): what waited for one goes now.
                try:
                    await self.store.run(lambda tx: q.outbox_wake_waiting(tx, now_ms()))
                    up, version = now_up, self.router.version
                except Exception:
                    log.exception("waking messages that wait for a bind failed; trying again")
            else:
                up = now_up
            await wait_any(stop, stop, timeout=BIND_WATCH_S)

    def _ups(self) -> dict[str, bool]:
        # channels without binds (the simulator) are always up
        return {name: getattr(c, "binds_up", 1) != 0 for name, c in self.router.channels.items()}

    async def _heartbeat(self, seen: dict[str, tuple[int, float]]) -> None:
        beat = now_ms()

        renamed = f"{self._name}.{self._epoch + 1}"

        holding = bool(self._tasks)

        async def unit(tx: Tx) -> tuple[bool, list[tuple[str, int]]]:
            alive = await q.worker_beat(tx, self.owner, beat)
            if not alive:
                await q.worker_register(tx, renamed, beat)
            elif holding:
                # sends still waiting (a call for a free line): their leases must not run out
                await q.outbox_extend(tx, self.owner, beat + self.lease_ms, beat + self.lease_ms // 2)
            return alive, await q.workers(tx)

        alive, others = await self.store.run(unit)
        if not alive:
            self._fenced(renamed)
        t = asyncio.get_running_loop().time()
        listed = set()
        for owner, at in others:
            if owner == self.owner:
                continue
            listed.add(owner)
            first = seen.get(owner)
            if first is None or first[0] != at:
                seen[owner] = (at, t)
            elif t - first[1] >= self.dead_s:
                del seen[owner]
                await self._take_over(owner, at, t - first[1])
        for owner in set(seen) - listed:
            del seen[owner]

    def _fenced(self, renamed: str) -> None:
        """Another worker took us for dead (we stalled) and took our leases:
        what we claimed and have not sent yet is its now."""
        self._epoch += 1
        old, self.owner = self.owner, renamed
        log.error("dispatch worker %s was taken for dead (it stalled) and its work handed on; continuing as %s",
                  old, self.owner)

    async def _take_over(self, owner: str, beat: int, silent_s: float) -> None:
        now = now_ms()

        async def unit(tx: Tx) -> list[int] | None:
            if not await q.worker_declare_dead(tx, owner, beat):
                return None  # it beat meanwhile, or another worker was first
            ids = await q.outbox_take_back(tx, now, owner)
            await q.insert_events(tx, [(mid, now, "retry", f"{TAKEN_OVER} (worker {owner} stopped)") for mid in ids])
            return ids

        ids = await self.store.run(unit)
        if ids is not None:
            log.warning("dispatch worker %s silent for %.1f s: took back its %d leased messages", owner, silent_s, len(ids))

    async def _record(self, tx: Tx, batch: list[Outcome]) -> None:
        now = now_ms()
        msgs = {m["id"]: m for m in await q.messages_by_ids(tx, [o.message_id for o in batch])}
        done: list[int] = []
        parts: list[tuple[int, int, str, str, str, int]] = []
        submitted_ids: dict[str, list[str]] = {}
        sent_since: dict[str, int] = {}
        retries: list[tuple[int, int]] = []
        waits: list[tuple[int, int | None, int]] = []
        writes = Writes()
        for o in batch:
            msg = msgs.get(o.message_id)
            if msg is None:
                continue
            if o.submitted is not None:
                ids = o.submitted.operator_ids
                sent = o.sent_at or now
                for n, op_id in enumerate(ids, 1):
                    parts.append((o.message_id, n, op_id, o.channel, State.SUBMITTED.value, now, sent, msg["expires_at"]))
                submitted_ids.setdefault(o.channel, []).extend(ids)
                o.result = "submitted"
                sent_since[o.channel] = min(sent, sent_since.get(o.channel, sent))
                extra: dict[str, Any] = {"connector": o.channel}
                longest = getattr(self.router.channel(o.channel), "longest_call_ms", None) \
                    if msg["channel"] == "voice" else None
                if longest is not None and sent + longest < msg["expires_at"]:
                    # a call placed is over by then: if its outcome never comes (the
                    # process placing it died), it expires then, on every store
                    extra["expires_at"] = sent + longest
                await transition(
                    tx, msg, State.SUBMITTED, now, detail=f"{o.channel}: {','.join(ids)}"[:300],
                    extra=extra, writes=writes,
                )
                done.append(o.message_id)
            else:
                err = o.error
                assert err is not None
                if o.epoch != self._epoch:
                    continue  # not sent: its row went to another worker when we were taken for dead
                if err.transient and err.code in NO_BIND:
                    waits.append(self._wait(writes, msg, o, err, now))
                    o.due, waiting_since, _ = waits[-1]
                    o.result = "waiting" if waiting_since is not None else "retry"
                elif err.transient and o.attempts < self.max_attempts:
                    due = now + backoff_ms(o.attempts, self.retry_base_ms, self.retry_cap_ms)
                    retries.append((due, o.message_id))
                    o.result, o.due = "retry", due
                    writes.event(o.message_id, now, "retry", f"attempt {o.attempts} failed ({err.reason}); next at {iso(due)}"[:300])
                else:
                    state = err.state if not err.transient else State.FAILED
                    o.result = "failed"
                    await transition(
                        tx, msg, state, now, detail=err.reason[:300], error_code=err.code or None,
                        reason=err.reason[:200], writes=writes,
                    )
                    done.append(o.message_id)
        await writes.flush(tx)
        metrics.dispatched(batch, msgs, now, self.max_attempts)
        if parts:
            await q.insert_parts(tx, parts)
        if retries:
            await q.outbox_retries(tx, retries)
        if waits:
            await q.outbox_waits(tx, waits)
        if done:
            await q.outbox_done(tx, done)
        # after the flush: a receipt that came early reads the message as submitted
        for channel, ids in submitted_ids.items():
            await apply_early_receipts(tx, channel, ids, sent_since[channel])

    def _wait(self, writes: Writes, msg: dict[str, Any], o: Outcome, err: SendError, now: int) -> tuple[int, int | None, int]:
        """A send that found no bind up: no try spent. (due_at, waiting_since, id)."""
        if self._routable(msg):  # another bind is up, or this one came back: go again at once
            writes.event(o.message_id, now, "retry", f"{err.reason}; sent again at once (not a try)"[:300])
            return now + min(self.retry_base_ms, 1000), None, o.message_id
        # The operator is out of reach: wait for a bind, however long the
        # outage, until the validity period ends; a bind coming up wakes it.
        if o.waiting_since is None:
            writes.event(o.message_id, now, "waiting",
                         f"{err.reason}: waiting for a bind (not a try) until the validity period ends"[:300])
        return min(now + self.wait_recheck_ms, msg["expires_at"] + 1), o.waiting_since or now, o.message_id

    def _routable(self, msg: dict[str, Any]) -> bool:
        try:
            self.router.route(msg)
        except SendError:
            return False
        return True
