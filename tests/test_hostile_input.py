"""Hostile input on every dialect: never a 5xx, always the dialect's own
error shape, and the keep-alive connection survives each answer.

Each table row is one request a tester (or an attacker) sends: nesting deep
enough to exhaust recursion, bodies and strings far too large, wrong types,
bytes that are not UTF-8, numbers past 64 bits, NUL characters (PostgreSQL
cannot store them), and, in every ``{id}`` path and id query parameter, ids
of 2^63 and more or written in Unicode digits ("²", "٣") that ``str.isdigit``
and ``int()`` accept. Both databases. The ``{id}`` paths are read from the
route table, so a new one is covered without editing this file."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import auth, eventually, make_account, serving
from ujumbe.dialects import native
from ujumbe.http import admin
from ujumbe.http.app import create_app
from ujumbe.http.common import MAX_BODY
from ujumbe.runtime import Platform

ADMIN = "hostile-admin-token-0123456789"
BIG = 2**63  # one past the largest id either database holds
BAD_IDS = [str(BIG), str(2**64 + 5), "9" * 5000, "²", "٣", "１", "-1", "0x1f", "1e3", "%201", "abc"]
BAD_NUMBERS = [str(BIG), "9" * 5000, "²", "٣", "-1", "1.5", "%00"]
DEEP = b"[" * 100_000  # the reported 500
TOO_BIG = b"x" * (MAX_BODY + 1)


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": [value]}
    return value


@dataclass
class Case:
    method: str
    path: str
    body: bytes | None = None
    status: int | None = None  # the exact status wanted, when one is
    code: str | None = None  # the dialect's error code wanted, when one is
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method} {self.path[:80]} {(self.body or b'')[:60]!r}"


def js(value: Any) -> bytes:
    return json.dumps(value).encode()


@contextlib.asynccontextmanager
async def one_connection(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """A client that may hold a single connection: a server that drops it
    after an answer shows as a new local port on the next one."""
    async with serving(create_app(platform, manage_platform=False)) as base:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
            yield client


def local_port(r: httpx.Response) -> int:
    return r.extensions["network_stream"].get_extra_info("client_addr")[1]


async def run_table(
    client: httpx.AsyncClient, cases: list[Case], headers: dict[str, str], shape: Callable[[Case, httpx.Response], None]
) -> None:
    first = await client.get("/health")
    port = local_port(first)
    failures = []
    for case in cases:
        r = await client.request(case.method, case.path, content=case.body, headers={**headers, **case.headers})
        try:
            assert r.status_code < 500, f"HTTP {r.status_code}"
            assert "close" not in r.headers.get("connection", "").lower(), "the server closed the connection"
            if case.status is not None:
                assert r.status_code == case.status, f"HTTP {r.status_code}, wanted {case.status}"
            shape(case, r)
        except AssertionError as exc:
            failures.append(f"{case}: {exc} -- {r.text[:200]}")
        after = await client.get("/health")  # the same connection, still usable
        if after.status_code != 200 or local_port(after) != port:
            failures.append(f"{case}: the connection did not survive")
            port = local_port(after)
    assert not failures, f"{len(failures)} of {len(cases)} answers were wrong:\n" + "\n".join(failures)


# --- native and admin: {"error": {"code", "message"}} ---


def native_shape(case: Case, r: httpx.Response) -> None:
    assert 400 <= r.status_code < 500, f"HTTP {r.status_code} is not a refusal"
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
    if case.code is not None:
        assert error["code"] == case.code, f"code {error['code']}, wanted {case.code}"


def fill(path: str, raw_id: str) -> str:
    """A route's path with ``raw_id`` as its id and plausible other parts."""
    out = []
    for seg in path.split("/"):
        if seg.startswith("{"):
            name = seg[1:-1].split(":")[0]
            seg = raw_id if name == "id" else {"mobile": "0708400000"}.get(name, "x")
        out.append(seg)
    return "/".join(out)


def id_cases(api: Any, not_found: dict[str, str]) -> list[Case]:
    """Every operation with an ``{id}`` in its path, with every bad id."""
    cases = []
    ops = [op for op in api.operations if "{id" in op.path]
    assert ops, "no {id} paths found: the table would test nothing"
    for op in ops:
        body = js({"name": "x"}) if op.method in ("PATCH", "PUT", "POST") else None
        code = next(c for prefix, c in not_found.items() if op.path.startswith(prefix))
        cases += [Case(op.method, fill(op.path, raw), body, 404, code) for raw in BAD_IDS]
    return cases


NATIVE_NOT_FOUND = {
    "/v1/messages/": "not_found", "/v1/callbacks/": "not_found", "/v1/premium-services/": "service_not_found",
    "/v1/routes/": "route_not_found", "/v1/requests/": "not_found",
    "/v1/verifications/": "verification_not_found", "/v1/campaigns/": "campaign_not_found",
    "/v1/campaign-numbers/": "number_not_found", "/v1/jobs/": "job_not_found", "/v1/audio/": "audio_not_found",
}
SEND = {"to": "0708400000", "text": "hi"}


def native_cases() -> list[Case]:
    cases = id_cases(native.api, NATIVE_NOT_FOUND)
    for path in ("/v1/messages", "/v1/transactions", "/v1/callbacks", "/v1/inbound"):
        for name in ("cursor", "limit"):
            cases += [Case("GET", f"{path}?{name}={raw}", status=400, code="invalid_parameter") for raw in BAD_NUMBERS
                      if raw != "%00"]
    cases += [
        # nesting
        Case("POST", "/v1/messages", DEEP, 400),
        Case("POST", "/v1/messages", js({**SEND, "meta": nested(40)}), 400, "json_too_deep"),
        Case("POST", "/v1/messages", js({**SEND, "params": nested(40)}), 400, "json_too_deep"),
        Case("POST", "/v1/messages", b'{"to": "0708400000", "text": "x", "meta": {"a": ' + b"[" * 3000 + b"]" * 3000 + b"}}",
             400, "json_too_deep"),
        Case("PUT", "/v1/account/callbacks", DEEP, 400, "json_too_deep"),
        Case("PUT", "/v1/templates/deep", DEEP, 400),
        Case("POST", "/v1/premium-services", DEEP, 400),
        Case("POST", "/v1/auth/token", DEEP, 400),
        # size
        Case("POST", "/v1/messages", TOO_BIG, 413, "body_too_large"),
        Case("POST", "/v1/messages", js({**SEND, "text": "x" * (MAX_BODY + 10)}), 413, "body_too_large"),
        Case("PUT", "/v1/templates/big", js({"body": "x" * (MAX_BODY + 10)}), 413, "body_too_large"),
        Case("POST", "/v1/api-keys", TOO_BIG, 413, "body_too_large"),
        Case("POST", "/v1/messages", js({**SEND, "text": "x" * 100_000}), 400, "message_too_long"),
        Case("POST", "/v1/messages", js({**SEND, "reference": "r" * 100_000}), 400, "invalid_reference"),
        Case("PUT", "/v1/templates/long", js({"body": "x" * 1_000_000}), 400, "validation_error"),
        Case("PUT", "/v1/templates/long", js({"body": "x", "subject": "s" * 100_000}), 400, "validation_error"),
        Case("POST", "/v1/api-keys", js({"label": "l" * 1_000_000}), 400, "validation_error"),
        # wrong types
        Case("POST", "/v1/messages", js({"to": {"a": 1}, "text": 5}), 400, "validation_error"),
        Case("POST", "/v1/messages", js({**SEND, "unicode": "yes"}), 400, "validation_error"),
        Case("POST", "/v1/messages", js([SEND]), 400, "validation_error"),
        Case("POST", "/v1/messages", b'"just a string"', 400, "validation_error"),
        Case("PUT", "/v1/account/callbacks", js(["x"]), 400),
        Case("PUT", "/v1/account/callbacks", js({"dlr_url": 5}), 400, "validation_error"),
        Case("POST", "/v1/premium-services", js({"shortcode": 22915, "type": ["subscription"]}), 400),
        Case("POST", "/v1/senders", js({"name": None}), 400, "validation_error"),
        # not UTF-8
        Case("POST", "/v1/messages", b'{"to": "0708400000", "text": "\xff\xfe"}', 400, "invalid_json"),
        Case("PUT", "/v1/templates/latin", "{\"body\": \"caf\xe9\"}".encode("latin-1"), 400, "invalid_json"),
        Case("PUT", "/v1/account/callbacks", b'{"dlr_url": "\xc3\x28"}', 400, "invalid_json"),
        Case("POST", "/v1/auth/token", b'{"username": "\xed\xa0\x80", "password": "x"}', 400, "invalid_json"),
        Case("POST", "/v1/messages", b'{"to": "0708400000", "text": "\\ud800"}', 400, "invalid_json"),
        # numbers out of range
        Case("POST", "/v1/messages", js({**SEND, "validity": BIG}), 400, "validation_error"),
        Case("POST", "/v1/messages", js({**SEND, "validity": 2**70}), 400, "validation_error"),
        Case("POST", "/v1/messages", js({**SEND, "validity": -5}), 400, "validation_error"),
        Case("POST", "/v1/messages", b'{"to": "0708400000", "text": "x", "validity": 1e400}', 400),
        Case("POST", "/v1/messages", js({**SEND, "send_at": "99999-01-01T00:00:00Z"}), 400, "validation_error"),
        Case("POST", "/v1/premium-services", js({"shortcode": "22915", "type": "subscription", "service_id": BIG}), 400),
        Case("POST", "/v1/premium-services", js({"shortcode": "22915", "type": "subscription", "service_id": -1}), 400),
        Case("POST", "/v1/routes", js({"kind": "default", "connector": "x", "priority": BIG}), 400),
        # NUL characters, in bodies, paths and queries
        Case("POST", "/v1/messages", js({**SEND, "text": "a\u0000b"}), 400, "invalid_character"),
        Case("POST", "/v1/messages", js({**SEND, "sender": "\u0000"}), 400, "invalid_character"),
        Case("POST", "/v1/messages", js({**SEND, "reference": "r\u0000"}), 400, "invalid_character"),
        Case("POST", "/v1/messages", js({**SEND, "meta": {"k\u0000": 1}}), 400, "invalid_character"),
        Case("PUT", "/v1/templates/nul", js({"body": "x\u0000"}), 400, "invalid_character"),
        Case("POST", "/v1/api-keys", js({"label": "\u0000"}), 400, "invalid_character"),
        Case("POST", "/v1/auth/token", js({"username": "a\u0000", "password": "x"}), 400, "invalid_character"),
        Case("GET", "/v1/templates/%00", None, 400, "invalid_character"),
        Case("DELETE", "/v1/senders/%00", None, 400, "invalid_character"),
        Case("GET", "/v1/requests/%00", None, 400, "invalid_character"),
        Case("GET", "/v1/messages?to=%00", None, 400, "invalid_character"),
        Case("GET", "/v1/messages?request_id=a%00", None, 400, "invalid_character"),
    ]
    return cases


async def test_native_api_hostile_input(platform: Platform) -> None:
    account = await make_account(platform)
    async with one_connection(platform) as client:
        await run_table(client, native_cases(), auth(account), native_shape)
        # and nothing of it was sent or charged
        r = await client.get("/v1/messages", headers=auth(account))
        assert r.json()["data"] == []


def admin_cases() -> list[Case]:
    connector = {"name": "c1", "host": "127.0.0.1", "port": 2775, "system_id": "s", "password": "p"}
    return id_cases(admin.api, {"/admin/v1/routes/": "route_not_found"}) + [
        Case("POST", "/admin/v1/connectors", DEEP, 400),
        Case("POST", "/admin/v1/connectors", TOO_BIG, 413, "body_too_large"),
        Case("POST", "/admin/v1/connectors", js({**connector, "port": BIG}), 400),
        Case("POST", "/admin/v1/connectors", js({**connector, "port": 2**70, "window": BIG}), 400),
        Case("POST", "/admin/v1/connectors", js({**connector, "binds": -1}), 400),
        Case("POST", "/admin/v1/connectors", b'{"name": "c2", "host": "h", "port": 1, "system_id": "s", "password": "p", '
             b'"tps": 1e400}', 400),
        Case("POST", "/admin/v1/connectors", js({**connector, "port": "2775"}), 400, "validation_error"),
        Case("POST", "/admin/v1/connectors", js({**connector, "name": "c\u0000"}), 400, "invalid_character"),
        Case("POST", "/admin/v1/connectors", b'{"name": "\xff"}', 400, "invalid_json"),
        Case("PATCH", "/admin/v1/connectors/none", js({"port": BIG}), None),
        Case("PATCH", "/admin/v1/connectors/none", DEEP, 400),
        Case("GET", "/admin/v1/connectors/%00", None, 400, "invalid_character"),
        Case("DELETE", "/admin/v1/connectors/a%00b", None, 400, "invalid_character"),
        Case("POST", "/admin/v1/routes", js({"kind": "default", "connector": "x", "priority": BIG}), 400),
        Case("POST", "/admin/v1/routes", js({"kind": "prefix", "connector": "x", "value": "\u0000"}), 400,
             "invalid_character"),
        Case("POST", "/admin/v1/routes", js({"kind": 5, "connector": []}), 400, "validation_error"),
    ]


async def test_admin_api_hostile_input(platform: Platform) -> None:
    platform.settings.admin_token = ADMIN
    async with one_connection(platform) as client:
        await run_table(client, admin_cases(), {"authorization": f"Bearer {ADMIN}"}, native_shape)


# --- Tingg: {"transactionID", "statusCode", "message"}; tokens {"statusCode", "message"} ---


def tingg_shape(case: Case, r: httpx.Response) -> None:
    assert 400 <= r.status_code < 500, f"HTTP {r.status_code} is not a refusal"
    body = r.json()
    keys = {"transactionID", "statusCode", "message"} if case.path.startswith("/api/v2/") else {"statusCode", "message"}
    assert set(body) == keys, f"not Tingg's shape: {sorted(body)}"
    assert body["statusCode"] == r.status_code and isinstance(body["message"], str) and body["message"]


def tingg_cases() -> list[Case]:
    ok = {"notificationType": "SMS_TEST", "referenceID": "ref-1", "smsDto": {"msisdn": ["0708400000"], "message": "hi"}}
    form = {"content-type": "application/x-www-form-urlencoded"}
    cases = []
    for path in ("/api/v2/engagement", "/api/v1/cas/authenticate", "/api/v1/cas/refresh"):
        cases += [
            Case("POST", path, DEEP, 400),
            Case("POST", path, TOO_BIG, 413),
            Case("POST", path, b'{"username": "\xff", "refresh_token": "\xff"}', 400),
            Case("POST", path, js([1, 2]), 400),
        ]
    # a NUL in a field each endpoint reads (unknown fields are ignored, as Tingg's clients expect)
    cases += [
        Case("POST", "/api/v2/engagement", js({**ok, "referenceID": "ref-\u0000"}), 400),
        Case("POST", "/api/v2/engagement", js({**ok, "smsDto": {"msisdn": ["0708400000"], "message": "h\u0000"}}), 400),
        Case("POST", "/api/v1/cas/authenticate", js({"username": "a\u0000", "password": "x"}), 400),
        Case("POST", "/api/v1/cas/refresh", js({"refresh_token": "\u0000"}), 400),
    ]
    cases += [
        Case("POST", "/api/v2/engagement", js({**ok, "smsDto": {**ok["smsDto"], "params": nested(40)}}), 400),
        Case("POST", "/api/v2/engagement", js({**ok, "smsDto": {**ok["smsDto"], "extraData": nested(40)}}), 400),
        Case("POST", "/api/v2/engagement", js({**ok, "smsDto": {"msisdn": [{"a": 1}], "message": "hi"}}), 400),
        Case("POST", "/api/v2/engagement", js({**ok, "referenceID": 5}), 400),
        Case("POST", "/api/v2/engagement", js({**ok, "channels": "SMS"}), 400),
        Case("POST", "/api/v2/engagement", js({**ok, "referenceID": "long",
                                               "smsDto": {**ok["smsDto"], "message": "x" * 100_000}}), 400),
        Case("POST", "/api/v2/engagement", js({**ok, "smsDto": {**ok["smsDto"], "message": "x" * (MAX_BODY + 1)}}), 413),
        Case("POST", "/api/v2/engagement", js({**ok, "referenceID": "r" * 100_000}), 400),
        Case("POST", "/api/v1/cas/authenticate", js({"username": 5, "password": None}), 400),
        Case("POST", "/api/v1/cas/refresh", b"refresh_token=%00&grant_type=refresh_token", 400, headers=form),
        Case("POST", "/api/v1/cas/refresh", b"refresh_token=" + b"x" * (MAX_BODY + 1), 413, headers=form),
    ]
    return cases


async def test_tingg_hostile_input(platform: Platform) -> None:
    account = await make_account(platform)
    async with one_connection(platform) as client:
        await run_table(client, tingg_cases(), auth(account), tingg_shape)


# --- Tilil: HTTP 200 with Tilil's status codes; never 1005 ("system error") ---


def tilil_shape(case: Case, r: httpx.Response) -> None:
    assert r.status_code == 200, f"Tilil answers 200, not {r.status_code}"
    if "/getdlr" in case.path:
        code, _, desc = r.text.partition(";")
        got = code
    else:
        body = r.json()
        item = body[0] if isinstance(body, list) else body
        got = item["status_code"]
        desc = item["status_desc"]
    assert got != "1005", f"1005 is Tilil's 500: {desc}"
    if case.code is not None:
        assert got == case.code, f"status {got} ({desc}), wanted {case.code}"


def tilil_cases(key: str, message_id: int) -> list[Case]:
    send = {"api_key": key, "mobile": "0708400000", "message": "hi", "shortcode": "Tilil"}
    manage = {"api_key": key, "mobile": "0708400000", "option": "activation"}
    cases = []
    for raw in BAD_IDS:
        if raw == "%201":
            continue  # " 1": getdlr trims spaces around the id, as it does every field
        cases += [
            Case("GET", f"/sms/v3/getdlr?api_key={key}&messageId={raw}", code="1009"),
            Case("GET", f"/sms/v3/getdlr?api_key={key}&message_id={raw}", code="1009"),
        ]
    # the id of a delivered message, in digits int() reads but that are not ASCII
    for digits in (str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"), str.maketrans("0123456789", "０１２３４５６７８９")):
        cases.append(Case("GET", f"/sms/v3/getdlr?api_key={key}&messageId={str(message_id).translate(digits)}",
                          code="1009"))
    cases += [Case("GET", f"/sms/v3/getdlr?api_key={key}&messageId=%00", code="1009")]
    for path, base in (("/sms/v3/sendsms", send), ("/sms/v3/subscribermanage", manage)):
        cases += [
            Case("POST", path, DEEP, code="1009"),
            Case("POST", path, js({**base, "extra": nested(40)}), code="1009"),
            Case("POST", path, TOO_BIG, code="1009"),
            Case("POST", path, js({**base, "mobile": "0" * (MAX_BODY + 1)}), code="1009"),
            Case("POST", path, b'{"api_key": "\xff\xfe"}', code="1009"),
            Case("POST", path, js([base]), code="1009"),
            Case("POST", path, js({**base, "mobile": "07\u000008400000"}), code="1009"),
            Case("POST", path, js({**base, "service_id": "²"}), code="1009"),
            Case("POST", path, js({**base, "service_id": "٣"}), code="1009"),
            Case("POST", path, js({**base, "service_id": -1}), code="1009"),
            Case("POST", path, js({**base, "service_id": 1.5}), code="1009"),
            Case("POST", path, js({**base, "service_id": [1]}), code="1009"),
            Case("POST", path, b'{"api_key": "%s", "service_id": 1e400}' % key.encode(), code="1009"),
            Case("POST", path, js({**base, "service_id": "9" * 5000})),
        ]
    cases += [
        Case("POST", "/sms/v3/sendsms", js({**send, "service_id": BIG}), code="1010"),
        Case("POST", "/sms/v3/sendsms", js({**send, "service_id": str(2**64)}), code="1010"),
        Case("POST", "/sms/v3/sendsms", js({**send, "message": 5}), code="1009"),
        Case("POST", "/sms/v3/sendsms", js({**send, "message": "x" * 100_000}), code="1009"),
        Case("POST", "/sms/v3/sendsms", js({**send, "mobile": {"a": 1}}), code="1009"),
        Case("POST", "/sms/v3/sendsms", js({**send, "response_type": ["json"]}), code="1009"),
        Case("POST", "/sms/v3/subscribermanage", js({**manage, "service_id": BIG}), code="0"),
        Case("POST", "/sms/v3/subscribermanage", js({**manage, "service_id": str(2**64)}), code="0"),
        Case("POST", "/sms/v3/subscribermanage", js({**manage, "option": {"a": 1}}), code="1009"),
    ]
    return cases


async def test_tilil_hostile_input(platform: Platform) -> None:
    account = await make_account(platform)
    await platform.senders.add(account["account_id"], "Tilil", None)
    async with one_connection(platform) as client:
        r = await client.post("/v1/messages", headers=auth(account), json={"to": "0708400000", "text": "hi"})
        message_id = r.json()["messages"][0]["id"]

        async def delivered() -> bool:
            r = await client.get(f"/sms/v3/getdlr?api_key={account['api_key']}&messageId={message_id}")
            return ";Success;" in r.text

        await eventually(delivered)  # so a misread id would show its report
        await run_table(client, tilil_cases(account["api_key"], message_id), {}, tilil_shape)


async def test_a_fault_of_ours_is_a_500_in_the_dialects_shape_on_a_kept_connection(platform: Platform) -> None:
    """The safety net under the tables above: a bug (here one planted in a
    use case) is still answered in the dialect's shape, and the client's
    keep-alive connection is not dropped with it."""
    account = await make_account(platform)
    platform.settings.admin_token = ADMIN

    async def bug(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug of ours")

    platform.templates.list = bug  # type: ignore[method-assign]
    platform.messaging.send = bug  # type: ignore[method-assign]
    platform.routing.list_connectors = bug  # type: ignore[method-assign]
    engagement = {"notificationType": "X", "referenceID": "bug-1", "smsDto": {"msisdn": ["0708400000"], "message": "hi"}}
    async with one_connection(platform) as client:
        port = local_port(await client.get("/health"))
        r = await client.get("/v1/templates", headers=auth(account))
        assert r.status_code == 500 and r.json() == {
            "error": {"code": "internal_error", "message": "Something went wrong on our side"}}
        r = await client.get("/admin/v1/connectors", headers={"authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        r = await client.post("/api/v2/engagement", headers=auth(account), json=engagement)
        assert r.status_code == 500
        assert r.json() == {"transactionID": None, "statusCode": 500, "message": "Something went wrong on our side"}
        r = await client.get("/health")
        assert r.status_code == 200 and local_port(r) == port, "the connection was dropped"
