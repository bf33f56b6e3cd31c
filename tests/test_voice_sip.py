"""Calls over a real SIP peer: sipp as the callee (UAS) on a free port, reached
through a configured SIP connector (channels/sip), Nepali text spoken over PCMA.
The done-when test of voice calls, and failover from a trunk answering 503."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Receiver, auth, client_of, eventually, free_port, make_account, running
from ujumbe.runtime import Platform

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None,
                                reason="sipp is not installed (Debian package sip-tester)")

SCENARIOS = Path(__file__).parent / "sip"
TEXT = "नमस्ते, तपाईंको अर्डर तयार छ। धन्यवाद।"


@contextlib.asynccontextmanager
async def sipp(scenario: str) -> AsyncIterator[int]:
    """sipp answering one call as ``scenario``; yields its SIP port."""
    port, media = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
        "-mp", str(media), "-rtp_echo", "-m", "1", "-nostdin", "-timeout", "60s",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(0.3)  # bound before the first INVITE
    try:
        yield port
        # the call is over: sipp saw it through its scenario (our ACK and BYE included) and exits 0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)
        assert proc.stderr is not None
        assert proc.returncode == 0, f"sipp ({scenario}): {(await proc.stderr.read()).decode(errors='replace')[-800:]}"
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def add_trunk(p: Platform, name: str, port: int, priority: int) -> None:
    await p.routing.add_connector({
        "name": name, "kind": "sip", "host": "127.0.0.1", "port": port, "system_id": "ujumbe", "password": "s3cret",
        "options": {"transport": "udp", "from_user": "9801000000", "max_calls": 4, "ring_timeout_s": 20,
                    "max_duration_s": 60, "local_host": "127.0.0.1"},
    })
    await p.routing.add_route(kind="default", connector=name, priority=priority)
    await p.router.reload()


async def ended(p: Platform, account_id: str, mid: int) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        m = await p.messaging.message(account_id, mid)
        return m if m.get("call") else None

    return await eventually(done, timeout=60)


async def test_nepali_text_spoken_to_a_sipp_callee_over_pcma(
    tmp_path: Path, database_url: str | None, receiver: Receiver,
) -> None:
    async with running(tmp_path, database_url) as p, sipp("voice_answer.xml") as port:
        await add_trunk(p, "trunk1", port, 1)
        account = await make_account(p)
        async with client_of(p) as api:
            r = await api.post("/v1/messages", headers=auth(account), json={
                "channel": "voice", "to": "0708400100", "text": TEXT, "voice": "np_rija",
                "callback_url": f"{receiver.url}/calls"})
            assert r.status_code == 202, r.text
            mid = r.json()["messages"][0]["id"]
            m = await ended(p, account["account_id"], mid)
            call = m["call"]
            assert m["state"] == "delivered" and m["connector"] == "trunk1", m
            assert call["outcome"] == "completed" and call["reason"] == "played_to_end" and call["sip_status"] == 200
            assert call["call_id"] and "@" in call["call_id"]
            assert call["audio_seconds"] > 1 and call["playback_seconds"] > 1 and call["duration_seconds"] > 1
            assert call["playback_seconds"] == pytest.approx(call["audio_seconds"], abs=0.1)  # the whole text
            answered = [e["detail"] for e in m["events"] if e["state"] == "answered"]
            assert answered and answered[0].endswith("PCMA"), m["events"]  # spoken over G.711 A-law
            ex = (await api.get(f"/v1/messages/{mid}/exchanges", headers=auth(account))).json()
            sip = " ".join(c["summary"] or "" for c in ex["carrier"] if c["kind"] == "sip")
            assert "s3cret" not in sip
        got = await receiver.wait_for(1, path="/calls", timeout=30)
        data = [c.json()["data"] for c in got if c.json()["data"]["final"]][0]
        assert data["call"]["outcome"] == "completed" and data["call"]["duration_seconds"] > 1


async def test_a_call_a_trunk_answers_503_goes_to_the_next_trunk(tmp_path: Path, database_url: str | None) -> None:
    async with running(tmp_path, database_url) as p, sipp("voice_503.xml") as down, sipp("voice_answer.xml") as up:
        await add_trunk(p, "trunk-a", down, 1)
        await add_trunk(p, "trunk-b", up, 2)
        account = await make_account(p)
        async with client_of(p) as api:
            r = await api.post("/v1/messages", headers=auth(account), json={
                "channel": "voice", "to": "0708400100", "text": TEXT})
            assert r.status_code == 202, r.text
            mid = r.json()["messages"][0]["id"]
        m = await ended(p, account["account_id"], mid)
        assert m["state"] == "delivered" and m["connector"] == "trunk-b" and m["call"]["outcome"] == "completed"
        retries = [e["detail"] for e in m["events"] if e["state"] == "retry"]
        assert any("trunk-a" in d and "503" in d and "next trunk" in d for d in retries), m["events"]
