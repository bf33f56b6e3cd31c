"""asyncio helpers shared by the long-running loops: wait for whichever comes first: work, a stop request, or a timeout."""

from __future__ import annotations

import asyncio


async def wait_any(event: asyncio.Event, stop: asyncio.Event, timeout: float) -> None:
    if event.is_set() or stop.is_set():
        return
    waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
