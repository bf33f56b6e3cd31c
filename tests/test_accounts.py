"""Accounts, credentials, tokens and tenant isolation."""

from __future__ import annotations

import time

import httpx
import jwt

from tests.conftest import auth, make_account
from ujumbe.runtime import Platform


async def test_login_by_email_or_username_and_refresh_once(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform, email="Mary@Example.com", username="mary", password="s3cret-pass")
    by_email = await api.post("/v1/auth/token", json={"email": "mary@example.com", "password": "s3cret-pass"})
    assert by_email.status_code == 200, by_email.text
    tokens = by_email.json()
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 3600
    by_name = await api.post("/v1/auth/token", json={"username": "mary", "password": "s3cret-pass"})
    assert by_name.status_code == 200

    me = await api.get("/v1/account", headers={"authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200 and me.json()["id"] == account["account_id"]
    assert "private_key" not in me.text and "password" not in me.text

    fresh = await api.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert fresh.status_code == 200
    assert fresh.json()["access_token"] != tokens["access_token"]
    reused = await api.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "invalid_refresh_token"


async def test_wrong_password_is_401_and_repeated_failures_are_limited(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    await make_account(platform, username="victim", password="right-password")
    for _ in range(5):
        r = await api.post("/v1/auth/token", json={"username": "victim", "password": "wrong-password"})
        assert r.status_code == 401
        assert r.json()["error"] == {"code": "invalid_credentials", "message": "Wrong username or password"}
    blocked = await api.post("/v1/auth/token", json={"username": "victim", "password": "right-password"})
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0


async def test_expired_forged_and_missing_tokens_are_refused(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform)
    expired = jwt.encode(
        {"sub": account["account_id"], "typ": "access", "exp": int(time.time()) - 10},
        platform.accounts._jwt_key, algorithm="HS256",
    )
    forged = jwt.encode({"sub": account["account_id"], "typ": "access", "exp": int(time.time()) + 100}, "a-guessed-key-that-is-long-enough-for-hs256", algorithm="HS256")
    cases = {
        expired: "token_expired",
        forged: "invalid_token",
        "uj_not-a-real-key": "invalid_api_key",
    }
    for token, code in cases.items():
        r = await api.get("/v1/balance", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 401 and r.json()["error"]["code"] == code
    r = await api.get("/v1/balance")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_token"


async def test_secrets_are_stored_hashed(platform: Platform) -> None:
    account = await make_account(platform, password="plain-text-pw")
    rows = await platform.store.read(lambda tx: tx.fetch("SELECT * FROM accounts"))
    keys = await platform.store.read(lambda tx: tx.fetch("SELECT * FROM api_keys"))
    dump = repr([tuple(r) for r in rows]) + repr([tuple(r) for r in keys])
    for secret in ("plain-text-pw", account["api_key"], account["private_key"], account["webhook_secret"]):
        assert secret not in dump
    assert "$argon2" in dump


async def test_accounts_see_only_their_own_data(platform: Platform, api: httpx.AsyncClient) -> None:
    alice, bob = await make_account(platform), await make_account(platform)
    r = await api.post("/v1/messages", headers=auth(alice), json={"to": "0708400000", "text": "private", "reference": "x1"})
    mid = r.json()["messages"][0]["id"]
    await api.put("/v1/templates/otp", headers=auth(alice), json={"body": "Code {code}"})

    assert (await api.get(f"/v1/messages/{mid}", headers=auth(bob))).status_code == 404
    assert (await api.get(f"/v1/requests/{r.json()['request_id']}", headers=auth(bob))).status_code == 404
    assert (await api.get("/v1/messages", headers=auth(bob))).json()["data"] == []
    assert (await api.get("/v1/templates", headers=auth(bob))).json() == []
    assert (await api.get("/v1/callbacks", headers=auth(bob))).json()["data"] == []
    # the same reference on another account is another request
    other = await api.post("/v1/messages", headers=auth(bob), json={"to": "0708400000", "text": "mine", "reference": "x1"})
    assert other.status_code == 202 and other.json()["duplicate"] is False
    # bob cannot use alice's template key
    r = await api.post("/v1/messages", headers=auth(bob), json={"to": "0708400000", "template": "otp", "params": {"code": 1}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "template_not_found"


async def test_new_api_key_works(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform)
    r = await api.post("/v1/api-keys", headers=auth(account), json={"label": "ci"})
    assert r.status_code == 201
    key = r.json()["api_key"]
    assert (await api.get("/v1/balance", headers={"authorization": f"Bearer {key}"})).status_code == 200
