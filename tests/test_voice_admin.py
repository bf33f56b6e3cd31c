"""The operator's side of calls: SIP connectors and voice prices from the
command line and the admin API, checked and kept as SMS connectors are."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import client_of
from tests.test_cli import clean_env, ok, run
from ujumbe.runtime import Platform

ADMIN = "admin-token-for-voice-tests"


def test_cli_adds_a_sip_connector_and_sets_voice_prices(tmp_path: Path) -> None:
    env = clean_env(UJUMBE_DATA_DIR=str(tmp_path / "data"))
    (tmp_path / "pw").write_text("trunk-secret\n")
    added = ok(run(env, "connectors", "add", "trunk1", "--kind", "sip", "--host", "sip.example.net", "--port", "5060",
                   "--username", "ujumbe", "--password-file", str(tmp_path / "pw"), "--from-user", "9801000000",
                   "--max-calls", "30", "--cps", "5", "--ring-timeout", "25", "--max-duration", "300"))
    assert added["kind"] == "sip" and added["password_set"] is True and "trunk-secret" not in str(added)
    assert added["options"] == {"from_user": "9801000000", "max_calls": 30, "cps": 5.0, "ring_timeout_s": 25.0,
                                "max_duration_s": 300.0}
    listed = ok(run(env, "connectors", "list"))
    assert [c["name"] for c in listed] == ["trunk1"] and "trunk-secret" not in str(listed)
    bad = run(env, "connectors", "add", "trunk2", "--kind", "sip", "--host", "h", "--port", "5060",
              "--password-file", str(tmp_path / "pw"), "--max-calls", "0")
    assert bad.returncode != 0 and "max_calls" in bad.stderr
    assert ok(run(env, "prices", "set", "*", "2.5", "--channel", "voice")) == {
        "network": "*", "channel": "voice", "price": 2.5, "unit": "per_minute"}
    assert ok(run(env, "prices", "set", "Ncell", "4", "--channel", "voice", "--unit", "per_call"))["unit"] == "per_call"
    refused = run(env, "prices", "set", "*", "1", "--unit", "per_call")  # an SMS price is per part
    assert refused.returncode != 0 and "per part" in refused.stderr


async def test_admin_api_sip_connectors_are_checked(platform: Platform) -> None:
    platform.settings.admin_token = ADMIN
    h = {"authorization": f"Bearer {ADMIN}"}
    body = {"name": "trunk1", "kind": "sip", "host": "127.0.0.1", "port": 5060, "system_id": "u", "password": "p" * 20,
            "options": {"transport": "tcp", "max_calls": 4}}
    async with client_of(platform) as api:
        for options, words in (({"transport": "sctp"}, "transport"), ({"max_calls": 0}, "max_calls"),
                               ({"cps": "fast"}, "cps"), ({"colour": "red"}, "SIP options"),
                               ({"from_user": "a b"}, "from_user")):
            r = await api.post("/admin/v1/connectors", headers=h, json={**body, "options": options})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_connector", r.text
            assert words in r.json()["error"]["message"]
        r = await api.post("/admin/v1/connectors", headers=h, json=body)
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["kind"] == "sip" and out["password_set"] and "password" not in out
        # a route to it takes calls only: an SMS still goes to the simulator
        r = await api.post("/admin/v1/routes", headers=h, json={"kind": "default", "connector": "trunk1"})
        assert r.status_code == 201
        await platform.router.reload()
        sms = {"recipient": "254708400100", "network": None, "account_id": "a", "channel": "sms"}
        assert platform.router.route(sms).name == "simulator"
        assert platform.router.candidates({**sms, "channel": "voice"}) == ["trunk1"]
        r = await api.patch("/admin/v1/connectors/trunk1", headers=h, json={"options": {"max_calls": 8}})
        assert r.status_code == 200 and r.json()["options"] == {"transport": "tcp", "max_calls": 8}
