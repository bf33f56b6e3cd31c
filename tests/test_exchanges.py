"""GET /v1/messages/{id}/exchanges: the carrier and callback exchanges of one message."""

from __future__ import annotations

import httpx

from tests.conftest import Receiver, auth, eventually, make_account
from ujumbe.http.exchanges import masked
from ujumbe.runtime import Platform


async def test_the_exchanges_of_a_delivered_message_with_secrets_masked(
    platform: Platform, api: httpx.AsyncClient, receiver: Receiver,
) -> None:
    account = await make_account(platform)
    h = auth(account)
    url = receiver.url.replace("http://", "http://hook:s3cr3t-pw@") + "/dlr?token=t0psecret&x=1"
    r = await api.post("/v1/messages", headers=h, json={"to": "0708123499", "text": "hello", "callback_url": url})
    assert r.status_code == 202, r.text
    mid = r.json()["messages"][0]["id"]
    await receiver.wait_for(1)

    async def complete() -> dict | None:  # type: ignore[type-arg]
        got = (await api.get(f"/v1/messages/{mid}/exchanges", headers=h)).json()
        done = got["state"] == "delivered" and got["callbacks"] and all(c["status"] == "delivered" for c in got["callbacks"])
        return got if done and len(got["carrier"]) == 2 else None

    got = await eventually(complete)
    assert got["state"] == "delivered"
    submit, receipt = got["carrier"]
    assert submit["kind"] == "submit" and submit["connector"] == "simulator" and submit["latency_ms"] >= 0
    assert submit["operator_ids"] == [got["parts"][0]["operator_id"]]
    assert receipt["kind"] == "receipt" and receipt["state"] == "delivered"
    assert receipt["operator_id"] == submit["operator_ids"][0] and receipt["after_submit_ms"] >= 0
    callback = got["callbacks"][-1]  # the final one (a client may also get one at the submit)
    assert callback["kind"] == "dlr" and callback["attempts"] == 1 and callback["last_http_status"] == 200
    assert "s3cr3t" not in r.text + str(got) and "t0psecret" not in str(got)
    assert callback["url"].startswith("http://hook:***@127.0.0.1:") and "token=***" in callback["url"]

    other = await make_account(platform)
    assert (await api.get(f"/v1/messages/{mid}/exchanges", headers=auth(other))).status_code == 404
    assert (await api.get(f"/v1/messages/{mid}/exchanges")).status_code == 401


def test_masking_keeps_where_a_url_goes() -> None:
    assert masked("https://u:p@example.com:8443/cb?api_key=k&id=7") == "https://u:***@example.com:8443/cb?api_key=***&id=7"
    assert masked("https://example.com/cb") == "https://example.com/cb"
