"""Bad input gets a clear JSON error with a fitting status, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import auth, make_account
from ujumbe.runtime import Platform


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        (b"", 400, "invalid_json", "empty"),
        (b"{not json", 400, "invalid_json", "not valid JSON"),
        (b'{"to": 5, "text": "x"}', 400, "validation_error", "$.to"),
        (b'{"to": "0708400000", "text": "x", "colour": "red"}', 400, "validation_error", "colour"),
        (b'{"to": "0708400000"}', 400, "missing_text", "text is missing"),
        (b'{"to": [], "text": "x"}', 400, "missing_recipients", "No recipients"),
        (b'{"to": "0708400000", "text": "Hi {name}", "params": {"nam": "x"}}', 400, "missing_params", "name"),
        (b'{"to": "0708400000", "text": "' + b"a" * 921 + b'"}', 400, "message_too_long", "921"),
        (b'{"to": "0708400000", "text": "x", "channel": "fax"}', 422, "channel_not_configured", "fax"),
        (b'{"to": "0708400000", "text": "x", "channel": "email"}', 400, "missing_subject", "subject"),
        (b'{"to": "0708400000", "text": "x", "subject": "Hi"}', 400, "invalid_request", "email"),
    ],
)
async def test_bad_send_requests(
    platform: Platform, api: httpx.AsyncClient, body: bytes, status: int, code: str, words: str
) -> None:
    account = await make_account(platform)
    r = await api.post("/v1/messages", headers={**auth(account), "content-type": "application/json"}, content=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert words in error["message"]


async def test_private_callback_targets_are_refused_unless_allowed(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform)
    platform.settings.allow_private_callbacks = False
    for url in ("http://127.0.0.1:9/x", "http://10.0.0.5/hook", "http://[::1]/x", "ftp://example.com/x"):
        r = await api.put("/v1/account/callbacks", headers=auth(account), json={"dlr_url": url})
        assert r.status_code == 400, url
        assert r.json()["error"]["code"] in ("private_callback_url", "invalid_callback_url")
        r = await api.post("/v1/messages", headers=auth(account), json={"to": "0708400000", "text": "x", "callback_url": url})
        assert r.status_code == 400
    assert (await api.get("/v1/messages", headers=auth(account))).json()["data"] == []
    platform.settings.allow_private_callbacks = True
    r = await api.put("/v1/account/callbacks", headers=auth(account), json={"dlr_url": "http://127.0.0.1:9/x"})
    assert r.status_code == 200 and r.json()["dlr_url"] == "http://127.0.0.1:9/x"


async def test_unknown_paths_and_methods_answer_json(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await api.delete("/v1/messages")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


async def test_head_is_answered_as_get_is(platform: Platform, api: httpx.AsyncClient) -> None:
    """HEAD on a path that takes GET and POST was a 500 (the GET/POST split had no HEAD)."""
    account = await make_account(platform)
    get = await api.get("/v1/messages", headers=auth(account))
    head = await api.head("/v1/messages", headers=auth(account))
    assert get.status_code == head.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"]
    assert (await api.head("/v1/messages")).status_code == 401  # and it asks for a key as GET does


async def test_bad_query_parameters(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform)
    for params in ({"limit": "lots"}, {"limit": "0"}, {"state": "happy"}, {"cursor": "x"}):
        r = await api.get("/v1/messages", headers=auth(account), params=params)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_parameter", params
    assert (await api.get("/v1/messages/99999999", headers=auth(account))).status_code == 404


async def test_openapi_document_and_docs_page(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for path in ("/v1/messages", "/v1/messages/{id}", "/v1/templates/{key}", "/v1/balance", "/v1/auth/token"):
        assert path in doc["paths"]
    send = doc["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert send["$ref"].endswith("/SendBody")
    assert "to" in doc["components"]["schemas"]["SendBody"]["properties"]
    page = await api.get("/docs")
    assert page.status_code == 200 and "openapi.json" in page.text


async def test_a_lost_database_is_a_503_not_a_500(platform: Platform, api: httpx.AsyncClient, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("only a server database can go away under a running process")
    account = await make_account(platform)
    await platform.store._pool.close()  # type: ignore[attr-defined]
    r = await api.post("/v1/messages", headers=auth(account), json={"to": "0708400000", "text": "hi"})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "database_unavailable"
