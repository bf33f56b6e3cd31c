"""Use cases behind the web dashboard: its sessions, an account's figures at a
glance, API keys, the send preview, and the operator's account actions.

The dashboard (ujumbe/http/dashboard) is an adapter over these and the other
services; it holds no SQL.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import hmac
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ujumbe.core import encoding
from ujumbe.core.errors import Invalid, NotFound
from ujumbe.core.pricing import PriceTable
from ujumbe.core.states import State
from ujumbe.store import Store, now_ms
from ujumbe.store import callbacks as callbacks_q
from ujumbe.store import dashboard as q

SESSION_TTL_S = 12 * 3600


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class WebSession:
    token: str
    account_id: str | None
    admin: bool
    csrf: str


class WebSessions:
    """Server-side sessions: the cookie holds a random token, the database its
    SHA-256. The CSRF token is derived from the session token with the server
    secret, so it is never stored and changes with every session."""

    def __init__(self, store: Store, secret: str, ttl_s: int = SESSION_TTL_S) -> None:
        self.store = store
        self._key = hmac.new(secret.encode(), b"dashboard-csrf", hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def csrf_for(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    async def open(self, account_id: str | None, *, admin: bool = False) -> WebSession:
        token = secrets.token_urlsafe(32)
        now = now_ms()

        async def unit(tx: Any) -> None:
            await q.forget_expired_sessions(tx, now)
            await q.insert_session(tx, _sha256(token), account_id, admin, now, now + self.ttl_s * 1000)

        await self.store.run(unit)
        return WebSession(token, account_id, admin, self.csrf_for(token))

    async def get(self, token: str) -> WebSession | None:
        if not token:
            return None
        row = await self.store.read(lambda tx: q.session(tx, _sha256(token), now_ms()))
        if row is None:
            return None
        return WebSession(token, row["account_id"], bool(row["admin"]), self.csrf_for(token))

    async def close(self, token: str) -> None:
        await self.store.run(lambda tx: q.delete_session(tx, _sha256(token)))

    async def close_all_of(self, account_id: str) -> None:
        await self.store.run(lambda tx: q.delete_sessions_of(tx, account_id))

    def csrf_ok(self, session: WebSession, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(session.csrf, given or "")


# --- today at a glance ---

FAILED_STATES = frozenset({State.UNDELIVERED.value, State.FAILED.value, State.REJECTED.value, State.EXPIRED.value})
PENDING_STATES = frozenset({State.ACCEPTED.value, State.QUEUED.value, State.SUBMITTED.value})


@dataclass
class Glance:
    since: int
    bucket_ms: int
    total: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    by_channel: dict[str, dict[str, int]] = field(default_factory=dict)
    by_network: dict[str, dict[str, int]] = field(default_factory=dict)
    reasons: list[dict[str, Any]] = field(default_factory=list)
    percentiles: dict[str, int | None] = field(default_factory=dict)
    series: dict[str, list[int]] = field(default_factory=dict)  # per bucket: sent, delivered, failed
    buckets: list[int] = field(default_factory=list)  # bucket start times (epoch s)
    failure_rate: float = 0.0
    warn: bool = False
    threshold: float = 0.03


# A receipt's normalized reason (channels/base.py), in words an account holder reads.
REASON_WORDS = {
    "absent_subscriber": "The phone was off or out of coverage",
    "blacklisted": "The number is barred from receiving messages",
    "unknown_subscriber": "The number does not exist on the network",
    "not_subscribed": "The subscriber is not subscribed to the service",
    "invalid_number": "Not a valid mobile number",
    "insufficient_balance": "Not enough credit",
    "invalid_link_id": "The reply's link id was not valid",
    "suspended": "The subscriber's line is suspended",
    "throttled": "The operator asked us to slow down",
}
STATE_WORDS = {
    State.UNDELIVERED.value: "The operator could not deliver it",
    State.EXPIRED.value: "No delivery report within the validity period",
    State.FAILED.value: "It never reached the operator (every retry failed)",
    State.REJECTED.value: "Refused before delivery",
}


def in_words(state: str, reason: str | None) -> str:
    return REASON_WORDS.get((reason or "").lower()) or STATE_WORDS.get(state, state)


def percentile(sorted_values: list[int], p: float) -> int | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, -(-int(p * len(sorted_values) * 1000) // 100_000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# Delivery times are kept as a histogram: bin i counts times up to EDGES[i]
# (100 ms growing by a quarter each bin, to past two days), so a percentile
# is known to within a quarter whatever the volume.
EDGES = [int(100 * 1.25**i) for i in range(64)]


def _bin(ms: int) -> int:
    return min(bisect.bisect_left(EDGES, ms), len(EDGES) - 1)


def histogram_percentile(hist: list[int], p: float) -> int | None:
    """The upper edge of the bin holding the p-th percentile (nearest rank)."""
    total = sum(hist)
    if not total:
        return None
    rank = max(1, -(-int(p * total * 1000) // 100_000))
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return EDGES[i]
    return EDGES[-1]


def _outcome(state: str) -> str:
    if state == State.DELIVERED.value:
        return "delivered"
    if state in FAILED_STATES:
        return "failed"
    return "pending"


# A row as store.dashboard reads it: (id, created_at, channel, state, network, error_code, error_reason, done_at)
TallyRow = tuple[Any, ...]
FINAL_STATES = frozenset(s.value for s in State if s.final)


class Tally:
    """One account's window, summed as it goes: a final state never changes,
    so a message is read once when it is final, and the few still pending are
    read again by id until they are."""

    def __init__(self, since: int) -> None:
        self.mark = (since, 0)  # every message created up to (created_at, id) is counted
        self.since = since
        self.final: dict[tuple[Any, ...], int] = {}  # (bucket, channel, state, network, code, reason) -> messages
        self.latency: dict[int, list[int]] = {}  # bucket -> delivery-time histogram
        self.pending: dict[int, TallyRow] = {}  # id -> row, oldest first
        self.pending_counts: dict[tuple[Any, ...], int] = {}  # the pending ones, summed as ``final``

    @staticmethod
    def _key(row: TallyRow, bucket_ms: int) -> tuple[Any, ...]:
        return (row[1] // bucket_ms, row[2], row[3], row[4], row[5], row[6])

    def _unpend(self, mid: int, bucket_ms: int) -> None:
        old = self.pending.pop(mid, None)
        if old is not None:
            key = self._key(old, bucket_ms)
            left = self.pending_counts[key] - 1
            if left:
                self.pending_counts[key] = left
            else:
                del self.pending_counts[key]

    def add(self, row: TallyRow, bucket_ms: int) -> None:
        mid, created, _channel, state, _network, _code, _reason, done = row
        self._unpend(mid, bucket_ms)  # a pending one read again goes to the back of the queue
        key = self._key(row, bucket_ms)
        if state not in FINAL_STATES:
            self.pending[mid] = row
            self.pending_counts[key] = self.pending_counts.get(key, 0) + 1
            return
        self.final[key] = self.final.get(key, 0) + 1
        if state == State.DELIVERED.value and done is not None:
            hist = self.latency.setdefault(key[0], [0] * len(EDGES))
            hist[_bin(done - created)] += 1

    def forget(self, mid: int, bucket_ms: int) -> None:
        self._unpend(mid, bucket_ms)

    def prune(self, since: int, bucket_ms: int) -> None:
        if since == self.since:
            return
        self.since = since
        first = since // bucket_ms
        self.final = {k: n for k, n in self.final.items() if k[0] >= first}
        self.latency = {b: h for b, h in self.latency.items() if b >= first}
        for mid in [i for i, r in self.pending.items() if r[1] < since]:
            self._unpend(mid, bucket_ms)


class Dashboard:
    """The account holder's figures and the dashboard's other small use cases."""

    # A message is committed within this long of its created_at (the accept
    # answers only once it is): younger ones are read afresh every time.
    settle_ms = 30_000
    chunk = 20_000  # rows per read; the event loop serves others between reads
    recheck = 20_000  # young pending messages read again per refresh
    recheck_old = 2_000  # and older ones, in turn
    young_ms = 600_000  # pending for less than 10 minutes: its receipt is due

    def __init__(self, store: Store, *, failure_threshold: float = 0.03, cache_s: float = 2.0) -> None:
        self.store = store
        # GOV.UK Notify warns above 3 % failures; so do we, by default.
        self.failure_threshold = failure_threshold
        # The page refreshes live; many tabs of one account share one read.
        self.cache_s = cache_s
        self._cache: dict[tuple[str, int, int], tuple[float, Glance]] = {}
        self._tallies: dict[tuple[str, int, int], Tally] = {}
        self._locks: dict[tuple[str, int, int], asyncio.Lock] = {}

    async def glance(self, account_id: str, *, hours: int = 24, bucket_minutes: int = 60) -> Glance:
        key = (account_id, hours, bucket_minutes)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one refresh per account at a time; the others take its result
            return await self._glance(key, account_id, hours, bucket_minutes * 60_000)

    async def _glance(self, key: tuple[str, int, int], account_id: str, hours: int, bucket_ms: int) -> Glance:
        now = now_ms()
        # Buckets aligned to the clock, so the chart's points stay put between refreshes.
        since = (now // bucket_ms) * bucket_ms - max(0, hours * 3_600_000 - bucket_ms)
        hit = self._cache.get(key)
        if hit and time.monotonic() - hit[0] < self.cache_s and hit[1].since == since:
            return hit[1]
        tally = self._tallies.get(key)
        if tally is None or tally.mark[0] < since - 2 * bucket_ms:
            tally = Tally(since)  # a first look, or one long ago: start over
        settled = now - self.settle_ms
        while True:  # messages settled since the last look, read once
            after = tally.mark
            rows = await self.store.read(
                lambda tx, after=after: q.created_after(tx, account_id, after, settled, self.chunk))  # type: ignore[misc]
            for row in rows:
                tally.add(row, bucket_ms)
            if rows:
                tally.mark = (rows[-1][1], rows[-1][0])
            if len(rows) < self.chunk:
                break
            await asyncio.sleep(0)
        if tally.pending:
            # Those still pending are read again by id: the young ones (their
            # receipts are due) every time, and a share of the older ones (a
            # late receipt, an expiry) in turn, so the cost stays bounded.
            young_after = now - self.young_ms
            young = [i for i, r in tally.pending.items() if r[1] > young_after][: self.recheck]
            old = list(itertools.islice((i for i, r in tally.pending.items() if r[1] <= young_after),
                                        self.recheck_old))
            for start in range(0, len(young) + len(old), 2000):
                ids = (young + old)[start : start + 2000]
                rows = await self.store.read(lambda tx, ids=ids: q.tally_rows(tx, ids))  # type: ignore[misc]
                found = set()
                for row in rows:
                    found.add(row[0])
                    tally.add(row, bucket_ms)
                for mid in set(ids) - found:
                    tally.forget(mid, bucket_ms)
                await asyncio.sleep(0)
        tally.prune(since, bucket_ms)
        self._tallies[key] = tally
        fresh = await self.store.read(lambda tx: q.created_since(tx, account_id, max(settled, tally.mark[0])))
        g = self._figures(tally, fresh, since, now, bucket_ms)
        self._cache[key] = (time.monotonic(), g)
        if len(self._cache) > 1000:
            self._cache.clear()
        if len(self._tallies) > 1000:
            self._tallies.clear()
        return g

    def _figures(self, tally: Tally, fresh: list[TallyRow], since: int, now: int, bucket_ms: int) -> Glance:
        g = Glance(since=since, bucket_ms=bucket_ms, threshold=self.failure_threshold)
        first = since // bucket_ms
        n_buckets = int(now // bucket_ms - first) + 1
        g.buckets = [(first + i) * bucket_ms // 1000 for i in range(n_buckets)]
        g.series = {k: [0] * n_buckets for k in ("sent", "delivered", "failed")}
        hist = [0] * len(EDGES)
        for h in tally.latency.values():
            for i, n in enumerate(h):
                hist[i] += n
        counted: list[tuple[tuple[Any, ...], int]] = [*tally.final.items(), *tally.pending_counts.items()]
        for row in fresh:  # created in the last seconds: not in the tally yet
            mid, created, channel, state, network, code, reason, done = row
            counted.append(((created // bucket_ms, channel, state, network, code, reason), 1))
            if state == State.DELIVERED.value and done is not None:
                hist[_bin(done - created)] += 1
        reasons: dict[tuple[str, str | None, str | None], int] = {}
        for (bucket, channel, state, network, code, reason), n in counted:
            outcome = _outcome(state)
            g.total += n
            setattr(g, outcome, getattr(g, outcome) + n)
            g.by_state[state] = g.by_state.get(state, 0) + n
            for table, name in ((g.by_channel, channel), (g.by_network, network or "unknown")):
                cell = table.setdefault(name, {"sent": 0, "delivered": 0, "failed": 0, "pending": 0})
                cell["sent"] += n
                cell[outcome] += n
            b = int(bucket - first)
            if 0 <= b < n_buckets:
                g.series["sent"][b] += n
                if outcome != "pending":
                    g.series[outcome][b] += n
            if outcome == "failed":
                k = (state, code, reason)
                reasons[k] = reasons.get(k, 0) + n
        g.reasons = [
            {"state": s, "code": c, "reason": why, "words": in_words(s, why), "count": n}
            for (s, c, why), n in sorted(reasons.items(), key=lambda kv: -kv[1])
        ]
        g.percentiles = {f"p{p}": histogram_percentile(hist, p) for p in (50, 90, 99)}
        done = g.delivered + g.failed
        g.failure_rate = g.failed / done if done else 0.0
        g.warn = done > 0 and g.failure_rate > self.failure_threshold
        return g

    # --- messages ---

    async def search(
        self, account_id: str, *, limit: int, before: int | None = None, state: str | None = None,
        recipient: str | None = None, request_id: str | None = None, since: int | None = None,
        until: int | None = None, before_time: tuple[int, int] | None = None, channel: str | None = None,
    ) -> list[dict[str, Any]]:
        return await self.store.read(lambda tx: q.search_messages(
            tx, account_id, limit=limit, before=before, state=state, recipient=recipient, request_id=request_id,
            since=since, until=until, before_time=before_time, channel=channel,
        ))

    async def message_detail(self, account_id: str, message_id: int, request_id: str) -> dict[str, Any]:
        """The parts, callbacks and ledger rows of one of the account's messages."""

        async def unit(tx: Any) -> dict[str, Any]:
            callbacks = await q.callbacks_of_message(tx, account_id, message_id)
            attempts = await callbacks_q.attempts_of(tx, account_id, [c["id"] for c in callbacks])
            return {
                "parts": await q.parts_of(tx, message_id),
                "callbacks": [{**c, "tries": attempts[c["id"]]} for c in callbacks],
                "ledger": await q.ledger_of_message(tx, account_id, request_id, message_id),
            }

        return await self.store.read(unit)

    # --- API keys ---

    async def api_keys(self, account_id: str) -> list[dict[str, Any]]:
        return await self.store.read(lambda tx: q.api_keys(tx, account_id))

    async def revoke_api_key(self, account_id: str, key_hash: str) -> None:
        if not await self.store.run(lambda tx: q.revoke_api_key(tx, account_id, key_hash, now_ms())):
            raise NotFound("No such API key", code="api_key_not_found")

    # --- the operator's accounts ---

    async def accounts_page(self, limit: int, after: str | None) -> list[dict[str, Any]]:
        return await self.store.read(lambda tx: q.accounts_page(tx, limit, after))

    async def set_active(self, account_id: str, active: bool) -> None:
        async def unit(tx: Any) -> bool:
            found = await q.set_active(tx, account_id, active)
            if found and not active:
                await q.delete_sessions_of(tx, account_id)  # a suspended account's pages close at once
            return found

        if not await self.store.run(unit):
            raise NotFound(f"No account {account_id}")


# --- the send form's preview ---

# Characters that often slip in from word processors and force UCS-2, and the
# GSM-7 character that reads the same.
REPLACEMENTS = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2026": "...", "\u00a0": " ", "\u2022": "*",
    "\u00b4": "'", "`": "'", "\u02bc": "'",
}


@dataclass(frozen=True)
class Preview:
    encoding: str
    parts: int
    chars: int
    units: int
    left: int  # characters (units) left in the last part
    per_part: int
    offenders: list[tuple[int, str, str | None]]  # (index, character, GSM-7 replacement) forcing UCS-2
    suggestion: str | None  # the text with every offender replaced, when that makes it GSM-7
    suggestion_parts: int | None
    cost: int | None  # in ledger units, for the network given
    too_long: bool


def preview(text: str, *, max_chars: int = 920, prices: PriceTable | None = None, network: str | None = None) -> Preview:
    seg = encoding.segment(text) if text else encoding.Segmentation(encoding.GSM7, ("",), 0, 0)
    parts = len(seg.parts)
    single, multi = (encoding.GSM7_SINGLE, encoding.GSM7_MULTI) if seg.encoding == encoding.GSM7 else (
        encoding.UCS2_SINGLE, encoding.UCS2_MULTI)
    per_part = single if parts == 1 else multi
    used_last = encoding._units(seg.parts[-1], seg.encoding) if text else 0
    offenders: list[tuple[int, str, str | None]] = []
    suggestion = None
    suggestion_parts = None
    if seg.encoding == encoding.UCS2:
        offenders = [(i, ch, REPLACEMENTS.get(ch)) for i, ch in enumerate(text) if ch not in encoding.GSM_ALL]
        if all(r is not None for _, _, r in offenders):
            suggestion = "".join(REPLACEMENTS.get(ch, ch) if ch not in encoding.GSM_ALL else ch for ch in text)
            suggestion_parts = encoding.count_parts(suggestion)[1]
    cost = prices.cost(network, parts) if prices is not None else None
    return Preview(
        encoding=seg.encoding, parts=parts, chars=seg.chars, units=seg.units, left=per_part - used_last,
        per_part=per_part, offenders=offenders, suggestion=suggestion, suggestion_parts=suggestion_parts,
        cost=cost, too_long=len(text) > max_chars,
    )


CHANNELS = ("sms", "email", "voice")


def check_channel(channel: str | None) -> str | None:
    if not channel:
        return None
    if channel not in CHANNELS:
        raise Invalid(f"'{channel}' is not a channel; use one of {', '.join(CHANNELS)}", code="invalid_parameter")
    return channel


def check_state(state: str | None) -> str | None:
    if not state:
        return None
    if state not in {s.value for s in State}:
        raise Invalid(f"'{state}' is not a state", code="invalid_parameter")
    return state
