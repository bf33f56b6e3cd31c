"""Interop with node-smpp (tests/peers/smsc.js), an SMSC nobody here wrote."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from smpp_helpers import ConnectorFactory, Events, outbound

from ujumbe.channels.base import SendError
from ujumbe.channels.smpp.receipts import id_variants
from ujumbe.core.states import State

PEERS = Path(__file__).resolve().parents[1] / "peers"
pytestmark = pytest.mark.node


@pytest.fixture
async def node_smsc() -> AsyncIterator[int]:
    node = shutil.which("node")
    if node is None or not (PEERS / "node_modules" / "smpp").is_dir():
        pytest.skip("node-smpp not installed: run `npm ci --prefix tests/peers`")
    proc = await asyncio.create_subprocess_exec(
        node, str(PEERS / "smsc.js"), "0", "5", "50", stdout=asyncio.subprocess.PIPE, cwd=str(PEERS)
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert line.startswith("listening "), line
        yield int(line.split()[1])
    finally:
        proc.terminate()
        await proc.wait()


async def test_connector_against_node_smpp(node_smsc: int, connect: ConnectorFactory, events: Events) -> None:
    c = await connect(node_smsc, system_id="ujumbe", password="secret")
    assert c.binds_up == 1
    results = await asyncio.gather(*(c.send(outbound(f"hello {i}", message_id=str(i))) for i in range(20)))
    long = await c.send(outbound("Habari " * 40))
    ids = [r.operator_ids[0] for r in results] + long.operator_ids
    assert len(long.operator_ids) == 2
    await events.wait_for(lambda: len(events.receipts) >= len(ids), timeout=10)
    assert all(r.state == State.DELIVERED for r in events.receipts)
    got = {r.operator_id for r in events.receipts}
    assert all(any(v in got for v in id_variants(i)) for i in ids)


async def test_node_smpp_rejects_wrong_password(node_smsc: int, connect: ConnectorFactory) -> None:
    c = await connect(node_smsc, system_id="ujumbe", password="wrong", send_wait_s=0.2)
    assert c.binds_up == 0
    with pytest.raises(SendError) as info:
        await c.send(outbound())
    assert info.value.transient


async def test_node_smpp_bind_status(node_smsc: int) -> None:
    from ujumbe.channels.smpp.pdu import ESME_RBINDFAIL, SmppError
    from ujumbe.channels.smpp.session import SmppSession

    loop = asyncio.get_running_loop()
    _, s = await loop.create_connection(lambda: SmppSession(name="t"), "127.0.0.1", node_smsc)
    with pytest.raises(SmppError) as info:
        await s.bind("transmitter", "ujumbe", "wrong")
    assert info.value.status == ESME_RBINDFAIL
    s.abort()
