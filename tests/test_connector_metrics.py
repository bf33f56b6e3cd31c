"""Connector figures for /metrics: binds up, in flight, throttles, rebinds."""

from __future__ import annotations

import asyncio

from ujumbe.channels.base import Outbound, SendError
from ujumbe.channels.smpp.sim import SmscSimulator
from ujumbe.metrics import CONNECTOR_BINDS_UP, CONNECTOR_RECONNECTS, CONNECTOR_THROTTLES, ConnectorGauges
from ujumbe.runtime import Platform
from tests.conftest import eventually


def sample(metric, name: str) -> float:  # type: ignore[no-untyped-def]
    return metric.labels(name)._value.get()


async def test_a_connector_shows_its_binds_throttles_and_rebinds(platform: Platform) -> None:
    sim = SmscSimulator("127.0.0.1", 0, tps=40, receipts=False)
    await sim.start()
    name = f"op{id(platform) % 100000}"
    try:
        await platform.routing.add_connector({"name": name, "host": "127.0.0.1", "port": sim.port,
                                              "system_id": "test", "password": "pw"})
        await platform.router.reload()
        channel = platform.router.connectors[name]
        await channel.wait_up(1)
        gauges = ConnectorGauges(platform.router)
        throttles_before = sample(CONNECTOR_THROTTLES, name)
        gauges.update()
        assert sample(CONNECTOR_BINDS_UP, name) == 1
        out = [Outbound(message_id=str(i), account_id="a", sender="", recipient="254708123499", body="hi",
                        encoding="gsm7", parts=1, validity_s=60) for i in range(120)]
        results = await asyncio.gather(*(channel.send(o) for o in out), return_exceptions=True)
        assert any(isinstance(r, SendError) for r in results)  # the SMSC throttled some
        gauges.update()
        assert sample(CONNECTOR_THROTTLES, name) > throttles_before
        # the SMSC goes away and comes back: the bind is made again
        reconnects = sample(CONNECTOR_RECONNECTS, name)
        port = sim.port
        await sim.stop()
        await eventually(lambda: asyncio.sleep(0, channel.binds_up == 0))
        gauges.update()
        assert sample(CONNECTOR_BINDS_UP, name) == 0
        sim = SmscSimulator("127.0.0.1", port, tps=40, receipts=False)
        await sim.start()
        await channel.wait_up(1, timeout=40)
        gauges.update()
        assert sample(CONNECTOR_BINDS_UP, name) == 1
        assert sample(CONNECTOR_RECONNECTS, name) == reconnects + 1
    finally:
        await sim.stop()
