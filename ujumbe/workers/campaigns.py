"""Campaign workers: the sender paces each running campaign (a token bucket
per campaign, at its rate in messages a second) and settles numbers whose
message is final; the job runner imports contact files and writes reports."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ujumbe.services.campaigns import Campaigns, Jobs

TICK_S = 0.1


class CampaignSender:
    def __init__(self, campaigns: Campaigns, accounts: Any, *, tick_s: float = TICK_S) -> None:
        self.campaigns = campaigns
        self.accounts = accounts
        self.tick_s = tick_s
        self._tokens: dict[int, float] = {}
        self._last = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        wake = self.campaigns.store.listener("campaigns")
        while not stop.is_set():
            busy = await self.tick()
            if not busy:
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), 0.5)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(self.tick_s)

    async def tick(self) -> bool:
        """One round: settle, finish, then send what each campaign's pace allows."""
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        busy = await self.campaigns.settle_finished() > 0
        await self.campaigns.finish_done()
        running = await self.campaigns.running()
        seen = set()
        for c in running:
            seen.add(c["id"])
            rate = self.campaigns.rate_of(c)
            # at most one second's worth at once: a pause does not save up a burst
            tokens = min(float(rate), self._tokens.get(c["id"], 0.0) + rate * elapsed)
            take = int(tokens)
            if take >= 1:
                sent = await self.campaigns.send_due(c, take, self.accounts)
                tokens -= sent
                busy = True
            self._tokens[c["id"]] = tokens
        for cid in list(self._tokens):
            if cid not in seen:
                del self._tokens[cid]
        return busy or bool(running)


class JobRunner:
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    async def run(self, stop: asyncio.Event) -> None:
        wake = self.jobs.store.listener("jobs")
        while not stop.is_set():
            if await self.jobs.run_next():
                continue
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), 1.0)
            except TimeoutError:
                pass
