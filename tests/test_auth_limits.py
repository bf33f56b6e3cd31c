"""Failed authentications are limited in the store, so every process on one
database shares the count (issue 11.10): logins per account (its username and
email alike) and per address, wrong API keys per address (429 in each
dialect's shape), while a right key or token always gets in. On SQLite and
PostgreSQL, each process an app on its own real socket."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt

from tests.conftest import auth, client_of, make_account, make_settings
from ujumbe.runtime import Platform


@contextlib.asynccontextmanager
async def second_process(platform: Platform, tmp_path: Path, database_url: str | None) -> AsyncIterator[httpx.AsyncClient]:
    """Another API process on the same database (and secret), with its own memory."""
    other = Platform(make_settings(tmp_path, database_url, secret_key=platform.settings.secret_key))
    await other.open()
    try:
        async with client_of(other) as client:
            yield client
    finally:
        await other.store.close()


async def login(api: httpx.AsyncClient, password: str, **who: str) -> httpx.Response:
    return await api.post("/v1/auth/token", json={**who, "password": password})


async def test_two_processes_share_one_accounts_login_limit(
    platform: Platform, api: httpx.AsyncClient, tmp_path: Path, database_url: str | None
) -> None:
    await make_account(platform, username="wanjiru", email="wanjiru@duka.co.ke", password="the right password")
    async with second_process(platform, tmp_path, database_url) as other:
        assert (await login(other, "the right password", username="wanjiru")).status_code == 200
        for client in (api, other, api, other):
            assert (await login(client, "a wrong guess", username="wanjiru")).status_code == 401
        # the fifth guess, by email on the first process: the same account, the same count
        assert (await login(api, "a wrong guess", email="wanjiru@duka.co.ke")).status_code == 401
        for client in (api, other):
            for who in ({"username": "wanjiru"}, {"email": "WANJIRU@duka.co.ke"}):
                r = await login(client, "the right password", **who)
                assert r.status_code == 429, r.text
                assert r.json()["error"]["code"] == "rate_limited" and 0 < int(r.headers["retry-after"]) <= 300
        # Tingg's login is the same account's too, answered in Tingg's shape
        r = await other.post("/api/v1/cas/authenticate", json={"username": "wanjiru", "password": "the right password",
                                                               "grant_type": "password"})
        assert r.status_code == 429 and r.json()["statusCode"] == 429 and int(r.headers["retry-after"]) > 0


async def test_parallel_guesses_cannot_slip_past_the_limit(platform: Platform, api: httpx.AsyncClient) -> None:
    import asyncio

    await make_account(platform, username="kamau", password="the right password")
    answers = await asyncio.gather(*(login(api, f"guess {n}", username="kamau") for n in range(12)))
    assert sorted(r.status_code for r in answers) == [401] * 5 + [429] * 7


async def test_a_right_login_starts_the_count_again(platform: Platform, api: httpx.AsyncClient) -> None:
    await make_account(platform, username="otieno", password="the right password")
    for _ in range(2):
        for _ in range(4):
            assert (await login(api, "a wrong guess", username="otieno")).status_code == 401
        assert (await login(api, "the right password", username="otieno")).status_code == 200


async def test_guessing_api_keys_is_answered_429_in_each_dialect_and_a_right_key_still_works(
    platform: Platform, api: httpx.AsyncClient, tmp_path: Path, database_url: str | None
) -> None:
    platform.accounts.throttle.hold_s = 0.05
    account = await make_account(platform)
    limit = platform.accounts.key_attempts
    async with second_process(platform, tmp_path, database_url) as other:
        other_platform = other  # the guesses come through both processes; the count is shared
        for n in range(limit):
            client = api if n % 2 else other_platform
            r = await client.get("/v1/balance", headers={"authorization": f"Bearer uj_guess{n}"})
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        started = time.monotonic()
        r = await api.get("/v1/balance", headers={"authorization": "Bearer uj_guess-more"})
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        assert 0 < int(r.headers["retry-after"]) <= 300 and time.monotonic() - started >= 0.05
        # Tingg: its envelope with the status; Tilil: its own body (it has no code for this but 1006)
        r = await other.post("/api/v2/engagement", headers={"authorization": "Bearer uj_guess-tingg"}, json={})
        assert r.status_code == 429 and r.json()["statusCode"] == 429 and int(r.headers["retry-after"]) > 0
        r = await api.post("/sms/v3/sendsms", json={"api_key": "uj_guess-tilil", "mobile": "0708400000",
                                                    "message": "x", "shortcode": "Tilil"})
        (row,) = r.json()
        assert row["status_code"] == "1006" and "Too many failed" in row["status_desc"]
        # the account's own key is not locked out by someone else's guesses
        assert (await api.get("/v1/balance", headers=auth(account))).status_code == 200
        assert (await other.get("/v1/balance", headers=auth(account))).status_code == 200


async def test_an_access_token_for_an_account_that_is_gone_is_401(platform: Platform, api: httpx.AsyncClient) -> None:
    token = jwt.encode(
        {"sub": "acc_" + uuid.uuid4().hex[:20], "typ": "access", "exp": int(time.time()) + 600},
        platform.accounts._jwt_key, algorithm="HS256",
    )
    headers = {"authorization": f"Bearer {token}"}
    r = await api.get("/v1/balance", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    r = await api.post("/api/v2/engagement", headers=headers, json={})
    assert r.status_code == 401 and r.json()["statusCode"] == 401
