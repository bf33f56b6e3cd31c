"""A campaign's pace is a property of the campaign in the store: several
worker processes sending one campaign together keep its rate, not a rate
each. Two senders share one store here as two worker processes would: a
second CampaignSender beside the platform's own, and two worker platforms on
one database (SQLite file or PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.conftest import make_settings
from tests.test_campaigns import account_of, balance, money_is_exact, settled
from ujumbe.runtime import Platform
from ujumbe.workers.campaigns import CampaignSender

RATE = 20
NUMBERS = 60


async def paced_run(platform: Platform) -> None:
    """Run a 20/s campaign of 60 numbers to the end while two senders work it:
    at every moment what went out is within the rate (plus the small burst a
    round may take at once), all 60 take about 3 s, not half that, and the
    money comes out exact."""
    account = await account_of(platform, credits="1000")
    start = await balance(platform, account.id)
    entries = [(f"07084{i:05d}", {}) for i in range(2000, 2000 + NUMBERS)]
    camp, _ = await platform.campaigns.create(account, name="Shared pace", services="SMS", message="Hi", rate=RATE,
                                              numbers_in=entries)
    began = time.monotonic()
    await platform.campaigns.begin(account, camp["id"])
    samples: list[tuple[float, int]] = []
    while True:
        nums = await platform.campaigns.numbers(account, camp["id"])
        out = sum(1 for n in nums if n["status"] != "scheduled")
        samples.append((time.monotonic() - began, out))
        if out == NUMBERS:
            break
        assert samples[-1][0] < 30, samples[-1]
        await asyncio.sleep(0.05)
    # one sender alone would allow RATE * elapsed + a burst of RATE / 2; two
    # paced apart would allow twice that (at 1 s: 60 where one rate allows 30)
    for elapsed, out in samples:
        assert out <= RATE * elapsed + RATE, (elapsed, out, samples)
    total_s = samples[-1][0]
    assert total_s >= NUMBERS / RATE - 1, (total_s, samples)  # about 3 s; two rates would take about 1.5
    await settled(platform, account, camp["id"])

    async def all_final() -> bool:
        ns = await platform.campaigns.numbers(account, camp["id"])
        return all(n["status"] not in ("scheduled", "running") for n in ns)

    while not await all_final():
        await asyncio.sleep(0.05)
    await money_is_exact(platform, account, camp["id"], start)
    summary = await platform.campaigns.summary(account, camp["id"])
    assert summary["numbers"] == NUMBERS and summary["by_status"]["completed"] == NUMBERS
    assert summary["credit_consumed"] == NUMBERS


async def test_two_senders_on_one_store_keep_one_rate(platform: Platform) -> None:
    stop = asyncio.Event()
    second = asyncio.create_task(CampaignSender(platform.campaigns, platform.accounts).run(stop))
    try:
        await paced_run(platform)
    finally:
        stop.set()
        await second


@contextlib.asynccontextmanager
async def worker_platforms(tmp_path: Path, database_url: str | None) -> AsyncIterator[list[Platform]]:
    """Two ``--role worker`` platforms on one database, as on two machines."""
    secret = "test-secret-" + uuid.uuid4().hex
    started: list[Platform] = []
    try:
        for _ in range(2):
            p = Platform(make_settings(tmp_path, database_url, secret_key=secret))
            await p.start("worker")
            started.append(p)
        yield started
    finally:
        for p in reversed(started):
            await p.stop()


async def test_two_worker_platforms_on_one_database_keep_one_rate(tmp_path: Path, database_url: str | None) -> None:
    async with worker_platforms(tmp_path, database_url) as (first, _second):
        await paced_run(first)


async def test_a_slow_rate_still_sends_one_at_a_time(platform: Platform) -> None:
    # 1 a second: the horizon is at least one send's time, so it is never stuck
    account = await account_of(platform, credits="10")
    camp, _ = await platform.campaigns.create(account, name="Slow", services="SMS", message="Hi", rate=1,
                                              numbers_in=[("0708400100", {}), ("0708400101", {})])
    began = time.monotonic()
    await platform.campaigns.begin(account, camp["id"])
    done: dict[str, Any] = await settled(platform, account, camp["id"])
    assert done["status"] == "completed"
    assert time.monotonic() - began >= 0.9  # the second number waited its second
