"""Helpers shared by the SMPP tests (a module of its own: importing from conftest is fragile)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ujumbe.channels.base import Inbound, Outbound, Receipt
from ujumbe.channels.smpp.client import SmppConnector


class Events:
    """ChannelEvents that records what arrives and lets a test wait for it."""

    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self.mo: list[Inbound] = []
        self._changed = asyncio.Event()

    async def receipt(self, receipt: Receipt) -> None:
        self.receipts.append(receipt)
        self._changed.set()

    async def inbound(self, message: Inbound) -> None:
        self.mo.append(message)
        self._changed.set()

    async def wait_for(self, pred: Callable[[], bool], timeout: float = 5.0) -> None:
        async def loop() -> None:
            while not pred():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)


def outbound(body: str = "hello", *, recipient: str = "254700000100", sender: str = "Ujumbe", encoding: str = "gsm7", **kw: Any) -> Outbound:
    return Outbound(
        message_id=kw.pop("message_id", "m1"),
        account_id="acct",
        sender=sender,
        recipient=recipient,
        body=body,
        encoding=encoding,
        parts=1,
        **kw,
    )


ConnectorFactory = Callable[..., Awaitable[SmppConnector]]
