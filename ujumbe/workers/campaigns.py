"""Campaign workers: the sender sends each running campaign's numbers at its
pace (kept in the campaign's row, so every worker process together keeps its
rate) and settles numbers whose message is final; the job runner imports
contact files and writes reports."""

from __future__ import annotations

import asyncio
from typing import Any

from ujumbe.services.campaigns import Campaigns, Jobs

TICK_S = 0.1
# At most this many numbers a campaign a round, so settling and the other
# campaigns get their turn even at a very high rate.
MAX_BATCH = 1000


class CampaignSender:
    def __init__(self, campaigns: Campaigns, accounts: Any, *, tick_s: float = TICK_S) -> None:
        self.campaigns = campaigns
        self.accounts = accounts
        self.tick_s = tick_s
        self._behind = False  # a campaign had more due than one round takes

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
                await asyncio.sleep(self.tick_s / 10 if self._behind else self.tick_s)

    async def tick(self) -> bool:
        """One round: settle, finish, then send what each campaign's pace allows."""
        busy = await self.campaigns.settle_finished() > 0
        await self.campaigns.end_stopped_calls()  # a campaign stopped through another process
        await self.campaigns.finish_done()
        running = await self.campaigns.running()
        self._behind = False
        for c in running:
            sent = await self.campaigns.send_due(c, MAX_BATCH, self.accounts)
            busy = busy or sent > 0
            self._behind = self._behind or sent == MAX_BATCH
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
