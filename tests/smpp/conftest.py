"""Fixtures for the SMPP tests: a simulator on a free port, an event sink, connectors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from smpp_helpers import ConnectorFactory, Events

from ujumbe.channels.smpp.client import SmppConnector
from ujumbe.channels.smpp.sim import SmscSimulator


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def sim() -> AsyncIterator[SmscSimulator]:
    s = SmscSimulator("127.0.0.1", 0, receipt_delay_ms=20, seed=1)
    await s.start()
    yield s
    await s.stop()



@pytest.fixture
async def connect(events: Events) -> AsyncIterator[ConnectorFactory]:
    made: list[SmppConnector] = []

    async def factory(port: int, **kw: Any) -> SmppConnector:
        kw.setdefault("rebind_min_s", 0.2)
        c = SmppConnector("127.0.0.1", port, kw.pop("system_id", "test"), kw.pop("password", "pw"), **kw)
        await c.start(events)
        made.append(c)
        return c

    yield factory
    for c in made:
        await c.stop()
