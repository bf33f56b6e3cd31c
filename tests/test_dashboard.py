"""The web dashboard over HTTP (no browser): its security rules, its scoping
to the logged-in account, and its figures. The browser tests are in
test_dashboard_browser.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import Receiver, auth, client_of, eventually, make_account
from ujumbe.core.encoding import GSM7, UCS2
from ujumbe.core.pricing import PriceTable
from ujumbe.runtime import Platform
from ujumbe.services.dashboard import EDGES, _bin, histogram_percentile, percentile, preview
from ujumbe.services.messaging import SendRequest

ADMIN = "admin-token-for-dashboard-tests-0123"
PASSWORD = "correct horse battery"


@pytest.fixture
async def web(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(platform) as client:
        yield client


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


async def log_in(c: httpx.AsyncClient, login: str, password: str = PASSWORD) -> httpx.Response:
    page = await c.get("/dashboard/login")
    return await c.post("/dashboard/login", data={"csrf": csrf_of(page.text), "login": login, "password": password})


async def logged_in(platform: Platform, account: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(platform) as c:
        r = await log_in(c, account["username"])
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/today", r.text
        yield c


PAGES = ["/dashboard/today", "/dashboard/today/figures", "/dashboard/today?days=7", "/dashboard/messages",
         "/dashboard/inbound",
         "/dashboard/send", "/dashboard/account", "/dashboard/campaigns"]


async def test_pages_have_a_csp_without_inline_script_and_a_locked_down_session_cookie(
    platform: Platform, web: httpx.AsyncClient,
) -> None:
    acc = await make_account(platform)
    r = await log_in(web, acc["email"])  # the email logs in as well as the username
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "ujumbe_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert "path=/dashboard" in cookie and "secure" not in cookie  # plain HTTP here; Secure over TLS
    for path in PAGES + ["/dashboard/login"]:
        page = await web.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp and page.headers["cache-control"] == "no-store"
        html = page.text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path  # no inline script
        assert not re.search(r"\son[a-z]+\s*=", html), path  # no inline event handler
        assert not re.search(r"\sstyle\s*=", html), path  # no inline style (style-src 'self')
        assert "hx-on" not in html and "js:" not in html
    # the vendored files are served from the package, nothing from elsewhere
    for asset in ("htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css", "dashboard.js", "dashboard.css"):
        assert (await web.get(f"/dashboard/static/{asset}")).status_code == 200
    assert "https://" not in (await web.get("/dashboard/today")).text.split("<main>")[0]


async def test_a_form_without_its_own_sessions_csrf_token_changes_nothing(platform: Platform) -> None:
    a, b = await make_account(platform), await make_account(platform)
    async for ca in logged_in(platform, a):
        async for cb in logged_in(platform, b):
            token_a = csrf_of((await ca.get("/dashboard/send")).text)
            token_b = csrf_of((await cb.get("/dashboard/send")).text)
            form = {"to": "0708400000", "text": "forged"}
            for data, headers in (
                (form, {}),                                            # no token
                ({**form, "csrf": token_b}, {}),                       # another session's token
                ({**form, "csrf": token_a}, {"origin": "https://evil.example"}),  # from another site
            ):
                r = await ca.post("/dashboard/send", data=data, headers=headers)
                assert r.status_code == 403 and "expired" in r.text
            assert await platform.messaging.messages(a["account_id"], limit=10) == []
            # and with its own token it goes
            r = await ca.post("/dashboard/send", data={**form, "csrf": token_a})
            assert r.status_code == 200 and "msg-link" in r.text
            assert len(await platform.messaging.messages(a["account_id"], limit=10)) == 1


async def test_logging_in_is_throttled_as_the_api_is(platform: Platform, web: httpx.AsyncClient) -> None:
    acc = await make_account(platform)
    for _ in range(5):
        r = await log_in(web, acc["username"], "wrong password")
        assert r.status_code == 401 and "Wrong username or password" in r.text
    r = await log_in(web, acc["username"])  # the right password, too late
    assert r.status_code == 429 and "Too many failed logins" in r.text
    assert "ujumbe_session" not in r.headers.get("set-cookie", "")
    # the login form itself has a CSRF token (login CSRF)
    r = await web.post("/dashboard/login", data={"login": acc["username"], "password": PASSWORD})
    assert r.status_code == 403


async def test_every_page_reads_only_the_logged_in_account(platform: Platform, receiver: Receiver) -> None:
    mine, theirs = await make_account(platform), await make_account(platform)
    async with client_of(platform) as api:
        r = await api.post("/v1/messages", headers=auth(theirs), json={
            "to": "0708400000", "text": "their secret", "reference": "their-ref", "callback_url": receiver.url + "/x"})
        their_id = r.json()["messages"][0]["id"]
    await receiver.wait_for(1)
    async def a_delivered_callback() -> dict[str, Any] | None:
        rows = await platform.callback_log.list(theirs["account_id"], None, 10, None)
        return next((cb for cb in rows if cb["status"] == "delivered"), None)

    their_cb = await eventually(a_delivered_callback)
    [their_key] = await platform.dashboard.api_keys(theirs["account_id"])
    async for c in logged_in(platform, mine):
        token = csrf_of((await c.get("/dashboard/account")).text)
        assert (await c.get(f"/dashboard/messages/{their_id}")).status_code == 404
        assert (await c.get(f"/dashboard/messages/{their_id}/live")).status_code == 404
        for query in ("", "?to=0708400000", "?reference=their-ref", f"?request_id={r.json()['request_id']}"):
            page = await c.get("/dashboard/messages" + query)
            assert page.status_code == 200 and "their secret" not in page.text and "no-messages" in page.text
        r2 = await c.post(f"/dashboard/callbacks/{their_cb['id']}/retry", data={"csrf": token})
        assert r2.status_code == 404
        r3 = await c.post("/dashboard/account/keys/revoke", data={"csrf": token, "key": their_key["key_hash"]})
        assert r3.status_code == 404
        assert '<b id="n-sent">0</b>' in (await c.get("/dashboard/today/figures")).text
    assert (await platform.accounts.authenticate_api_key(theirs["api_key"])).id == theirs["account_id"]
    cb = next(cb for cb in await platform.callback_log.list(theirs["account_id"], None, 10, None)
              if cb["id"] == their_cb["id"])
    assert cb["status"] == "delivered" and cb["attempts"] == their_cb["attempts"]  # not sent again


async def test_logging_out_ends_the_session_on_the_server(platform: Platform) -> None:
    acc = await make_account(platform)
    async for c in logged_in(platform, acc):
        cookie = c.cookies.get("ujumbe_session")
        token = csrf_of((await c.get("/dashboard/today")).text)
        assert (await c.post("/dashboard/logout", data={"csrf": token})).status_code == 303
        c.cookies.set("ujumbe_session", cookie, path="/dashboard")  # the old cookie, kept by an attacker
        r = await c.get("/dashboard/today")
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"


async def test_search_by_reference_and_state_pages_by_cursor_and_bad_input_is_a_page_not_a_500(
    platform: Platform,
) -> None:
    acc = await make_account(platform, credits="1000")
    async with client_of(platform) as api:
        await api.post("/v1/messages", headers=auth(acc), json={"to": "0708400000", "text": "a", "reference": "r-1"})
        await api.post("/v1/messages", headers=auth(acc),
                       json={"to": [f"07084{n:05d}" for n in range(10, 70)], "text": "bulk"})
    async for c in logged_in(platform, acc):
        page = await c.get("/dashboard/messages?reference=r-1")
        assert page.text.count('class="msg-link"') == 1 and "254708400000" in page.text
        first = await c.get("/dashboard/messages")
        assert first.text.count('class="msg-link"') == 50
        nxt = re.search(r'href="([^"]+)" id="next-page"', first.text)
        assert nxt
        second = await c.get(nxt.group(1).replace("&amp;", "&"))
        assert second.text.count('class="msg-link"') == 11 and 'id="next-page"' not in second.text
        ids = re.findall(r'class="msg-link">(\d+)<', first.text + second.text)
        assert len(set(ids)) == 61
        # by time: paged in (created_at, id) order, the same 61
        import datetime as dt

        def minute(delta: int) -> str:
            return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=delta)).strftime("%Y-%m-%dT%H:%M")

        for query in (f"since={minute(-10)}", f"until={minute(10)}", f"since={minute(-10)}&until={minute(10)}"):
            first = await c.get(f"/dashboard/messages?{query}")
            nxt = re.search(r'href="([^"]+)" id="next-page"', first.text)
            assert nxt and re.search(r"cursor=\d+\.\d+", nxt.group(1)), query
            second = await c.get(nxt.group(1).replace("&amp;", "&"))
            got = re.findall(r'class="msg-link">(\d+)<', first.text + second.text)
            assert sorted(got) == sorted(ids) and 'id="next-page"' not in second.text, query
        assert (await c.get(f"/dashboard/messages?since={minute(1)}")).text.count('class="msg-link"') == 0
        assert (await c.get(f"/dashboard/messages?since={minute(-10)}&cursor=12")).status_code == 400
        for path, status in (("/dashboard/messages?state=bogus", 400), ("/dashboard/messages?cursor=x", 400),
                             ("/dashboard/messages?since=yesterday", 400), ("/dashboard/messages/abc", 404),
                             ("/dashboard/messages?to=12", 400), ("/dashboard/today?days=3", 400)):
            r = await c.get(path)
            assert r.status_code == status and 'id="error"' in r.text, (path, r.status_code)


async def test_the_operator_pages_need_the_admin_token(platform: Platform) -> None:
    acc = await make_account(platform)
    async with client_of(platform) as c:
        assert (await c.get("/dashboard/admin")).status_code == 404  # no admin token configured: no admin pages
        platform.settings.admin_token = ADMIN
        r = await c.get("/dashboard/admin")
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/admin/login"
        # a tenant's session does not open them
        await log_in(c, acc["username"])
        assert (await c.get("/dashboard/admin")).headers["location"] == "/dashboard/admin/login"
        page = await c.get("/dashboard/admin/login")
        r = await c.post("/dashboard/admin/login", data={"csrf": csrf_of(page.text), "token": ADMIN})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/admin"
        board = await c.get("/dashboard/admin")
        assert board.status_code == 200 and "simulator" in board.text
        # nor does the operator's session open an account's pages
        assert (await c.get("/dashboard/today")).headers["location"] == "/dashboard/login"
        token = csrf_of(board.text)
        # top up, then suspend: the account's pages and API key stop at once
        r = await c.post(f"/dashboard/admin/accounts/{acc['account_id']}/topup", data={"csrf": token, "amount": "25"})
        assert r.status_code == 200 and "Topped up" in r.text
        assert await platform.credits.balance(acc["account_id"]) == 125 * 10_000
        r = await c.post("/dashboard/admin/accounts", data={
            "csrf": token, "name": "Duka", "email": "ops@duka.example", "password": "a long password", "credits": "5"})
        assert r.status_code == 200 and "Created acc_" in r.text
        key = re.search(r"shown this once: <code>(uj_[^<]+)</code>", r.text)
        assert key and (await platform.accounts.authenticate_api_key(key.group(1))).email == "ops@duka.example"
        r = await c.post("/dashboard/admin/accounts", data={
            "csrf": token, "name": "Duka", "email": "ops@duka.example", "password": "a long password"})
        assert r.status_code == 409 and "already exists" in r.text
    async for tenant in logged_in(platform, acc):
        async with client_of(platform) as c:
            page = await c.get("/dashboard/admin/login")
            await c.post("/dashboard/admin/login", data={"csrf": csrf_of(page.text), "token": ADMIN})
            token = csrf_of((await c.get("/dashboard/admin/accounts")).text)
            r = await c.post(f"/dashboard/admin/accounts/{acc['account_id']}/suspend", data={"csrf": token})
            assert r.status_code == 200 and "suspended" in r.text
        r = await tenant.get("/dashboard/today")
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
        async with client_of(platform) as api:
            assert (await api.get("/v1/balance", headers=auth(acc))).status_code == 401


def test_the_send_preview_names_the_character_that_forces_ucs2_and_its_replacement() -> None:
    pv = preview("It\u2019s 5\u20ac")
    assert pv.encoding == UCS2 and pv.parts == 1 and pv.left == 70 - 7
    assert pv.offenders == [(2, "\u2019", "'")]  # the euro sign is GSM-7 (extension table)
    assert pv.suggestion == "It's 5\u20ac" and pv.suggestion_parts == 1
    long = "a" * 300 + "\u2019"
    pv = preview(long)
    assert pv.parts == 5 and pv.suggestion_parts == 2  # the apostrophe more than doubles the price
    pv = preview("a" * 161)
    assert pv.encoding == GSM7 and pv.parts == 2 and pv.left == 153 * 2 - 161
    assert preview("\u20ac" * 80).parts == 1 and preview("\u20ac" * 81).parts == 2  # 2 septets each
    assert preview("\u4f60\u597d").suggestion is None  # no GSM-7 spelling: no suggestion
    assert preview("x" * 921).too_long
    prices = PriceTable({("Safaricom", "sms"): 8000})
    assert preview("a" * 161, prices=prices, network="Safaricom").cost == 16000


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (50, 90, 99)
    assert percentile([7], 99) == 7 and percentile([], 50) is None
    # the figures' histogram: each percentile within a quarter above the true one
    times = [100 + 37 * i for i in range(10_000)]
    hist = [0] * len(EDGES)
    for t in times:
        hist[_bin(t)] += 1
    for p in (50, 90, 99):
        exact = percentile(times, p)
        assert exact is not None
        got = histogram_percentile(hist, p)
        assert got is not None and exact <= got <= exact * 1.25, (p, exact, got)
    assert histogram_percentile([0] * len(EDGES), 50) is None


async def test_the_send_preview_endpoint_prices_each_recipients_network(platform: Platform) -> None:
    await platform.credits.set_price("Safaricom", "0.8")
    platform.messaging.forget_prices()
    acc = await make_account(platform)
    async for c in logged_in(platform, acc):
        token = csrf_of((await c.get("/dashboard/send")).text)
        r = await c.post("/dashboard/send/preview", headers={"x-csrf-token": token},
                         data={"text": "a" * 161, "to": "0708400000, 0708400001"})
        assert r.status_code == 200
        assert 'id="pv-parts">2<' in r.text and 'id="pv-cost">3.2<' in r.text and 'id="pv-encoding">GSM-7<' in r.text
        assert (await c.post("/dashboard/send/preview", data={"text": "x"})).status_code == 403


@pytest.mark.parametrize("young_ms", [600_000, 0], ids=["young", "old"])
async def test_the_figures_are_summed_as_messages_settle_and_agree_with_a_count_of_the_store(
    platform: Platform, young_ms: int,
) -> None:
    d = platform.dashboard
    d.young_ms = young_ms  # pending messages re-read as young ones (every look) or old ones (in turn)
    # every message counts as settled at once, in reads of 3 rows, 2 young and 1 old pending re-read per look
    d.settle_ms, d.chunk, d.recheck, d.recheck_old, d.cache_s = 0, 3, 2, 1, 0
    acc = await make_account(platform, credits="1000")
    aid = acc["account_id"]
    assert (await d.glance(aid)).total == 0
    account = await platform.accounts.get(aid)
    from ujumbe.services.messaging import SendRequest

    to = [f"0708{n:02d}{end}" for n, end in enumerate(["0000", "0002", "0005", "0006", "0000", "0003", "0000"] * 2)]
    await platform.messaging.send(account, SendRequest(recipients=to, text="Habari"))

    async def truth() -> dict[str, int]:
        rows = await platform.store.read(
            lambda tx: tx.fetch("SELECT state, count(*) FROM messages WHERE account_id = ? GROUP BY state", aid))
        return {r[0]: int(r[1]) for r in rows}

    g = await d.glance(aid)
    assert g.total == 14

    async def agrees() -> bool:
        g = await d.glance(aid)
        counted = await truth()
        # …0005 never gets a receipt: those two stay submitted, the rest end
        return g.by_state == counted and counted.get("submitted") == 2 and g.total == 14

    await eventually(agrees, timeout=30)
    g = await d.glance(aid)
    assert (g.delivered, g.failed, g.pending) == (6, 6, 2)
    assert sum(r["count"] for r in g.reasons) == 6
    assert sum(g.series["sent"]) == 14 and sum(g.series["failed"]) == 6
    assert g.percentiles["p50"] is not None
    tally = next(t for (a, *_), t in d._tallies.items() if a == aid)
    assert set(tally.pending) == {m["id"] for m in await platform.messaging.messages(aid, limit=50, state="submitted")}
    assert sum(tally.pending_counts.values()) == 2
    week = await d.glance(aid, hours=7 * 24, bucket_minutes=360)  # the 7-day view: its own tally
    assert (week.total, week.delivered, week.failed, len(week.buckets)) == (14, 6, 6, 28)


async def test_guessing_the_admin_token_on_the_login_page_is_throttled_as_the_admin_api(platform: Platform) -> None:
    platform.settings.admin_token = ADMIN
    async with client_of(platform) as c:
        for n in range(5):
            page = await c.get("/dashboard/admin/login")
            r = await c.post("/dashboard/admin/login", data={"csrf": csrf_of(page.text), "token": f"guess-{n}"})
            assert r.status_code == 401 and "not the admin token" in r.text
        page = await c.get("/dashboard/admin/login")
        r = await c.post("/dashboard/admin/login", data={"csrf": csrf_of(page.text), "token": "guess-6"})
        assert r.status_code == 429 and "Too many" in r.text
        # counted in the store with the admin API's: the API refuses wrong tokens from here too
        wrong = await c.get("/admin/v1/connectors", headers={"authorization": "Bearer guess-7"})
        assert wrong.status_code == 429
        # and the right token still gets in
        page = await c.get("/dashboard/admin/login")
        r = await c.post("/dashboard/admin/login", data={"csrf": csrf_of(page.text), "token": ADMIN})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/admin"


async def test_an_account_asks_for_a_sender_name_and_the_operator_approves_it_then_it_is_offered(
    platform: Platform,
) -> None:
    platform.settings.admin_token = ADMIN
    acc = await make_account(platform)
    async for c in logged_in(platform, acc):
        token = csrf_of((await c.get("/dashboard/account")).text)
        r = await c.post("/dashboard/account/senders", data={"csrf": token, "name": "DukaLtd"})
        assert r.status_code == 200 and "DukaLtd: pending" in r.text
        assert 'value="DukaLtd"' not in (await c.get("/dashboard/send")).text  # not usable yet
        r = await c.post("/dashboard/account/templates", data={"csrf": token, "key": "welcome", "body": "Habari ${name}"})
        assert r.status_code == 200 and "Template welcome saved" in r.text
        assert (await platform.templates.get(acc["account_id"], "welcome"))["body"] == "Habari ${name}"
        async with client_of(platform) as op:
            page = await op.get("/dashboard/admin/login")
            await op.post("/dashboard/admin/login", data={"csrf": csrf_of(page.text), "token": ADMIN})
            page = await op.get("/dashboard/admin/accounts")
            assert "DukaLtd" in page.text
            r = await op.post("/dashboard/admin/senders/approve",
                              data={"csrf": csrf_of(page.text), "account_id": acc["account_id"], "name": "DukaLtd"})
            assert r.status_code == 200 and "approved" in r.text
        assert 'value="DukaLtd"' in (await c.get("/dashboard/send")).text


async def test_the_connectors_board_counts_submits_receipts_and_errors(platform: Platform) -> None:
    platform.settings.admin_token = ADMIN
    acc = await make_account(platform)
    async with client_of(platform) as c:
        r = await c.post("/v1/messages", headers=auth(acc),
                         json={"to": ["0708400000", "0708410000", "0708420000", "0708400001"], "text": "Habari"})
        ids = [m["id"] for m in r.json()["messages"]]

        async def all_final() -> bool:
            rows = [await platform.messaging.message(acc["account_id"], i, with_events=False) for i in ids]
            return all(m["state"] in ("delivered", "failed", "rejected") for m in rows)

        await eventually(all_final)
        page = await c.get("/dashboard/admin/login")
        await c.post("/dashboard/admin/login", data={"csrf": csrf_of(page.text), "token": ADMIN})
        board = (await c.get("/dashboard/admin/connectors")).text
        row = board[board.index('data-name="simulator"'):].split("</tr>")[0]
        assert re.search(r'class="submits">3 · ', row), row
        assert re.search(r'class="receipts">3 · ', row), row
        assert re.search(r'class="errors">1 · last ', row), row


async def test_the_operator_adds_edits_and_deletes_routes_and_prices_with_the_apis_checks(platform: Platform) -> None:
    platform.settings.admin_token = ADMIN
    acc = await make_account(platform)
    async with client_of(platform) as c:
        page = await c.get("/dashboard/admin/login")
        await c.post("/dashboard/admin/login", data={"csrf": csrf_of(page.text), "token": ADMIN})
        token = csrf_of((await c.get("/dashboard/admin/routes")).text)
        r = await c.post("/dashboard/admin/routes", data={"csrf": token, "kind": "prefix", "value": "+2547",
                                                          "connector": "simulator", "priority": "5"})
        assert r.status_code == 200 and "added" in r.text
        [route] = await platform.routing.list_routes()
        assert (route["kind"], route["value"], route["connector"], route["priority"]) == ("prefix", "2547", "simulator", 5)
        # the admin API's checks and errors, shown on the page with the form kept
        for data, status, words in (
            ({"kind": "prefix", "value": "25x", "connector": "simulator"}, 400, "A prefix is 1-15 digits"),
            ({"kind": "default", "value": "", "connector": "nowhere"}, 404, "No connector named"),
            ({"kind": "default", "value": "", "connector": "simulator", "priority": "high"}, 400, "must be a whole number 0-1000000"),
            ({"kind": "sideways", "value": "", "connector": "simulator"}, 400, "must be one of prefix"),
            ({"kind": "default", "connector": "simulator", "account_id": "acc_nobody"}, 404, "No account acc_nobody"),
        ):
            r = await c.post("/dashboard/admin/routes", data={"csrf": token, **data})
            assert r.status_code == status and words in r.text and 'id="route-error"' in r.text, (data, r.text[:300])
        r = await c.post("/dashboard/admin/routes", data={"csrf": token, "kind": "network", "value": "Airtel",
                                                          "connector": "simulator", "account_id": acc["account_id"]})
        assert r.status_code == 200
        assert len(await platform.routing.list_routes(acc["account_id"])) == 1
        r = await c.post(f"/dashboard/admin/routes/{route['id']}/edit",
                         data={"csrf": token, "kind": "network", "value": "Safaricom", "connector": "simulator",
                               "priority": "7"})
        assert r.status_code == 200 and "saved" in r.text
        edited = next(x for x in await platform.routing.list_routes() if x["id"] == route["id"])
        assert (edited["kind"], edited["value"], edited["priority"]) == ("network", "Safaricom", 7)
        r = await c.post(f"/dashboard/admin/routes/{route['id']}/edit",
                         data={"csrf": token, "kind": "default", "value": "x", "connector": "simulator"})
        assert r.status_code == 400 and "A default route takes no value" in r.text
        r = await c.post(f"/dashboard/admin/routes/{route['id']}/delete", data={"csrf": token})
        assert r.status_code == 200 and "deleted" in r.text
        assert route["id"] not in [x["id"] for x in await platform.routing.list_routes()]
        for path in (f"/dashboard/admin/routes/{route['id']}/delete", "/dashboard/admin/routes/abc/edit"):
            assert (await c.post(path, data={"csrf": token})).status_code == 404
        # prices: set (charged at once in this process), refused, removed
        r = await c.post("/dashboard/admin/prices/price",
                         data={"csrf": token, "network": "Safaricom", "channel": "sms", "amount": "0.65"})
        assert r.status_code == 200 and "Safaricom (sms) costs 0.65 credits a part" in r.text
        assert (await platform.messaging.prices()).cost("Safaricom", 2) == 13_000
        # a voice price keeps its unit: a per-call price set again stays per call
        for amount in ("4", "5"):
            r = await c.post("/dashboard/admin/prices/price", data={
                "csrf": token, "network": "Ncell", "channel": "voice", "amount": amount, "unit": "per_call"})
            assert r.status_code == 200 and f"Ncell (voice) costs {amount} credits an answered call" in r.text
        assert (await platform.messaging.prices()).unit("Ncell", "voice") == "per_call"
        assert '<td>Ncell</td><td>voice</td><td>5</td><td>per call</td>' in r.text
        for amount, words in (("-1", "cannot be negative"), ("lots", "")):
            r = await c.post("/dashboard/admin/prices/price", data={"csrf": token, "network": "Airtel", "amount": amount})
            assert r.status_code == 400 and words in r.text and 'id="route-error"' in r.text
        r = await c.post("/dashboard/admin/prices/unprice", data={"csrf": token, "network": "Safaricom", "channel": "sms"})
        assert r.status_code == 200 and "removed" in r.text
        assert (await platform.messaging.prices()).cost("Safaricom", 1) == (await platform.messaging.prices()).default
        r = await c.post("/dashboard/admin/prices/unprice", data={"csrf": token, "network": "Safaricom", "channel": "sms"})
        assert r.status_code == 404
        # without the CSRF token nothing changes
        r = await c.post("/dashboard/admin/prices/price", data={"network": "Airtel", "amount": "1"})
        assert r.status_code == 403
    # a tenant's session cannot reach them
    async for tenant in logged_in(platform, acc):
        token = csrf_of((await tenant.get("/dashboard/account")).text)
        r = await tenant.post("/dashboard/admin/routes", data={"csrf": token, "kind": "default", "connector": "simulator"})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/admin/login"
    assert [x["kind"] for x in await platform.routing.list_routes()] == ["network"]


# --- voice calls ---

CALL_TEXT = "नमस्ते, तपाईंको अर्डर तयार छ।"


@pytest.fixture
async def voice_site(tmp_path: Any, database_url: str | None) -> AsyncIterator[Platform]:
    from tests.conftest import running

    # 0.01: the simulator's calls end in a few tens of ms; the figures reported stay the real ones
    async with running(tmp_path, database_url, sim_call_speed=0.01, admin_token=ADMIN) as p:
        yield p


async def _ended(platform: Platform, account_id: str, mid: int) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        m = await platform.messaging.message(account_id, mid)
        return m if m.get("call") else None

    return await eventually(done, timeout=20)


async def test_a_call_placed_from_the_send_page_shows_its_facts_and_another_account_gets_404(
    voice_site: Platform,
) -> None:
    from ujumbe.core.calls import REASON_TEXT

    p = voice_site
    mine, theirs = await make_account(p), await make_account(p)
    async for c in logged_in(p, mine):
        form = await c.get("/dashboard/send")
        assert 'id="channel"' in form.text and 'value="voice"' in form.text
        for name in ("np_rija", "np_prasanna", "np_binod"):
            assert f'<option value="{name}"' in form.text
        r = await c.post("/dashboard/send", data={
            "csrf": csrf_of(form.text), "channel": "voice", "to": "0708400100, 0708400102", "text": CALL_TEXT,
            "voice": "np_binod", "length_factor": "1.2", "sender": "",
        })
        assert r.status_code == 200, r.text
        ids = [int(i) for i in re.findall(r'class="msg-link">(\d+)<', r.text)]
        assert len(ids) == 2
        done, busy = [await _ended(p, mine["account_id"], mid) for mid in ids]
        assert done["channel"] == "voice" and done["recipient"].endswith("708400100")

        page = (await c.get(f"/dashboard/messages/{ids[0]}")).text
        assert '<span class="state delivered" id="call-outcome">completed</span>' in page
        assert '<code id="call-reason">played_to_end</code>' in page and REASON_TEXT["played_to_end"] in page
        assert '<dd id="call-sip">200 OK' in page
        assert '<dd id="call-ring">2.5 s</dd>' in page  # rang 2.5 s (the simulator's real figure)
        call = done["call"]
        assert f'{call["playback_seconds"]:g} s of {call["audio_seconds"]:g} s' in page
        assert "(1 billable minute)" in page and '<dd id="call-dtmf">none</dd>' in page
        assert call["answered_at"].replace("T", " ").removesuffix("Z") in page and call["call_id"] in page
        assert 'id="sip-log"' in page and "INVITE" in page  # the SIP exchange, line by line

        page = (await c.get(f"/dashboard/messages/{ids[1]}/live")).text
        assert '<code id="call-reason">busy</code>' in page and REASON_TEXT["busy"] in page
        assert "486 Busy Here" in page and "Q.850 cause 17" in page
        assert '<span class="state undelivered" id="call-outcome">unanswered</span>' in page

        badge = (await c.get(f"/dashboard/messages/{ids[0]}/live?badge=1")).text
        assert ">delivered · completed</span>" in badge

        listed = (await c.get("/dashboard/messages")).text
        assert listed.count('<td class="channel">voice</td>') == 2
        # an SMS beside the calls: the channel filter tells them apart
        await p.messaging.send(await p.accounts.get(mine["account_id"]), SendRequest(recipients=["0708400000"], text="hi"))
        calls_only = (await c.get("/dashboard/messages?channel=voice")).text
        assert calls_only.count('<td class="channel">voice</td>') == 2 and '<td class="channel">sms</td>' not in calls_only
        sms_only = (await c.get("/dashboard/messages?channel=sms")).text
        assert sms_only.count('class="msg-link"') == 1 and '<td class="channel">sms</td>' in sms_only
        assert (await c.get("/dashboard/messages?channel=fax")).status_code == 400
        figures = (await c.get("/dashboard/today/figures")).text
        assert re.search(r'<tr id="channel-voice"><td>voice</td><td>2</td><td>1</td>', figures), figures

    async for c in logged_in(p, theirs):
        for mid in ids:
            assert (await c.get(f"/dashboard/messages/{mid}")).status_code == 404
            assert (await c.get(f"/dashboard/messages/{mid}/live")).status_code == 404
            assert (await c.get(f"/dashboard/messages/{mid}/live?badge=1")).status_code == 404
        assert "708400100" not in (await c.get("/dashboard/messages")).text


async def test_listen_says_the_text_as_a_call_would_and_needs_the_csrf_token(voice_site: Platform) -> None:
    acc = await make_account(voice_site)
    async for c in logged_in(voice_site, acc):
        page = await c.get("/dashboard/send")
        token = csrf_of(page.text)
        assert "media-src 'self' blob:" in page.headers["content-security-policy"]
        r = await c.post("/dashboard/send/listen", data={"text": CALL_TEXT, "voice": "np_prasanna",
                                                         "length_factor": "1.0"}, headers={"x-csrf-token": token})
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        assert r.content[:4] == b"RIFF" and len(r.content) > 8000  # more than half a second at 8 kHz
        slow = await c.post("/dashboard/send/listen", data={"text": CALL_TEXT, "voice": "np_prasanna",
                                                            "length_factor": "2.0"}, headers={"x-csrf-token": token})
        assert len(slow.content) > len(r.content) * 1.5  # twice as slow: longer
        bad = await c.post("/dashboard/send/listen", data={"text": CALL_TEXT, "voice": "np_nobody"},
                           headers={"x-csrf-token": token})
        assert bad.status_code == 400 and "np_rija" in bad.text
        odd = await c.post("/dashboard/send/listen", data={"text": CALL_TEXT, "length_factor": "slow"},
                           headers={"x-csrf-token": token})
        assert odd.status_code == 400 and "length_factor must be a number from 0.39 to 2.19" in odd.text
        assert (await c.post("/dashboard/send/listen", data={"text": CALL_TEXT})).status_code == 403
        # a call with a bad voice is refused on the form, as the API refuses it
        r = await c.post("/dashboard/send", data={"csrf": token, "channel": "voice", "to": "0708400100",
                                                  "text": CALL_TEXT, "voice": "np_nobody"})
        assert r.status_code == 400 and "is not a voice" in r.text


async def test_the_operators_board_shows_the_voice_connectors_calls_and_limit(voice_site: Platform) -> None:
    async with client_of(voice_site) as c:
        page = await c.get("/dashboard/admin/login")
        await c.post("/dashboard/admin/login", data={"csrf": csrf_of(page.text), "token": ADMIN})
        board = (await c.get("/dashboard/admin/connectors")).text
        row = re.search(r'data-name="voice-simulator">(.*?)</tr>', board, re.S)
        assert row, board
        limit = voice_site.channels["voice-simulator"].max_in_flight
        assert f'<td class="calls">0 / {limit}</td>' in row.group(1)
        sms = re.search(r'data-name="simulator">(.*?)</tr>', board, re.S)
        assert sms and '<td class="calls">–</td>' in sms.group(1)
