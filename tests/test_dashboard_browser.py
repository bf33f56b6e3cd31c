"""The web dashboard in a real headless Chromium (tests/browser.py), on both
backends: what a user does with it, watched the way the user would.

Screenshots of the main pages go to test-artefacts/dashboard/ (printed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import ARTEFACTS, Browser, in_thread, require_browser
from tests.conftest import Receiver, make_account, running, serving
from ujumbe.channels.smpp.sim import SmscSimulator
from ujumbe.core.errors import Unauthorized
from ujumbe.http.app import create_app
from ujumbe.runtime import Platform
from ujumbe.services.messaging import SendRequest

pytestmark = pytest.mark.browser

ADMIN = "admin-token-for-browser-tests-0123"


@pytest.fixture
async def site(tmp_path: Path, database_url: str | None) -> AsyncIterator[tuple[Platform, Browser]]:
    require_browser()
    # Receipts take 2.5-3 s, so a page can be seen changing; failed callbacks
    # are given up on within a second; routing changes are seen at once.
    async with running(tmp_path, database_url, admin_token=ADMIN, sim_receipt_delay_ms=(2500, 3000),
                       callback_delay_scale=0.00001, routing_poll_s=0.2) as p:
        async with serving(create_app(p, manage_platform=False)) as base:
            browser = await asyncio.to_thread(Browser, base, asyncio.get_running_loop())
            try:
                yield p, browser
            finally:
                await asyncio.to_thread(browser.close)
    print(f"\nscreenshots in {ARTEFACTS.resolve()}")


async def send(p: Platform, account_id: str, to: list[str], text: str = "Habari") -> list[int]:
    account = await p.accounts.get(account_id)
    result = await p.messaging.send(account, SendRequest(recipients=to, text=text))
    return [r.message_id for r in result.recipients if r.message_id is not None]


async def given_up(p: Platform, account_id: str, message_id: int | None = None) -> list[dict[str, Any]]:
    """The account's failed callbacks (of ``message_id``), once there is one."""
    for _ in range(600):
        rows = [c for c in await p.callback_log.list(account_id, "failed", 10, None)
                if message_id is None or c["message_id"] == message_id]
        if rows:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError("no callback was given up on")


async def test_log_in_send_from_the_form_watch_it_delivered_then_search_and_open_it(
    site: tuple[Platform, Browser], backend: str,
) -> None:
    p, b = site
    acc = await make_account(p)

    def scenario() -> str:
        b.login(acc["username"])
        b.screenshot(f"today-{backend}")
        b.get("/dashboard/send")
        b.fill("#to", "0708400000")
        # a typographic apostrophe: the preview names it and offers the plain one
        b.css("#text").send_keys("It\u2019s on its way")
        b.wait_text("#pv-encoding", "UCS-2")
        assert b.text_of("#pv-char") == "\u2019"
        assert b.text_of("#pv-replacement") == "'"
        assert b.text_of("#pv-left") == str(70 - len("It's on its way"))
        b.screenshot(f"send-{backend}")
        b.css("#pv-apply").click()
        b.wait_text("#pv-encoding", "GSM-7")
        assert b.css("#text").get_attribute("value") == "It's on its way"
        assert b.text_of("#pv-left") == str(160 - len("It's on its way"))
        assert b.text_of("#pv-cost") == "1"
        b.css("#send-submit").click()
        mid = b.wait(lambda: b.text_of("#sent a.msg-link"), what="the sent page")
        b.mark_page()
        assert b.text_of(f"#state-{mid}") != "delivered"  # the receipt takes 2.5 s
        b.wait_text(f"#state-{mid}", "delivered")
        assert b.same_page(), "the state changed by a reload, not live"

        b.get("/dashboard/messages")
        b.fill("#q-to", "+254 708 400000")
        b.css("#q-submit").click()
        b.wait(lambda: [a.text for a in b.all("#messages a.msg-link")] == [mid], what="the search result")
        b.fill("#q-to", "0708400001")
        b.css("#q-submit").click()
        b.wait(lambda: b.all("#no-messages"), what="no result for another number")
        b.get("/dashboard/messages?state=delivered")
        b.screenshot(f"messages-{backend}")
        b.css("#messages a.msg-link").click()
        b.wait_text("#m-state", "delivered")
        events = b.text_of("#events")
        assert "queued" in events and "submitted" in events and "delivered" in events
        assert "simulator" in b.text_of("#parts")
        assert "charge" in b.text_of("#ledger")
        b.screenshot(f"message-{backend}")
        assert b.csp_violations() == []
        return mid

    mid = await in_thread(scenario)
    msg = await p.messaging.message(acc["account_id"], int(mid))
    assert msg["state"] == "delivered" and msg["body"] == "It's on its way" and msg["encoding"] == "gsm7"


async def test_failures_move_the_figures_and_the_chart_without_a_reload(
    site: tuple[Platform, Browser], backend: str,
) -> None:
    p, b = site
    acc = await make_account(p)

    def scenario() -> None:
        b.login(acc["email"])
        b.wait_text("#n-failed", "0")
        b.wait(lambda: b.css("#chart").get_attribute("data-drawn") == "0", what="the chart drawn")
        assert b.all("#chart canvas"), "uPlot drew no canvas"
        assert not b.all("#failure-warning")
        b.mark_page()
        # four numbers the simulator reports undelivered (…0002), one delivered
        b.run(send(p, acc["account_id"], ["0708400002", "0708410002", "0708420002", "0708430002", "0708400000"]))
        b.wait_text("#n-sent", "5")
        b.wait_text("#n-failed", "4", timeout=30)
        b.wait_text("#n-delivered", "1", timeout=30)
        b.wait(lambda: b.css("#chart").get_attribute("data-drawn") == "4", what="the chart redrawn with the failures")
        assert "80.0 %" in b.text_of("#failure-warning")
        reasons = b.text_of("#reasons")
        assert "undelivered" in reasons and "absent_subscriber" in reasons and "4" in reasons
        assert "The phone was off or out of coverage" in reasons
        assert "Safaricom" in b.text_of("#by-network")
        assert b.text_of("#p50").startswith("≤ ") and b.text_of("#p50") != "≤ –"
        assert b.same_page()
        b.screenshot(f"today-failures-{backend}")
        b.css("#view-week").click()  # the last 7 days, in 6-hour points
        b.wait_text("#n-failed", "4")
        assert b.css("#chart").get_attribute("data-drawn") == "4" and len(b.all("#chart canvas")) == 1
        assert b.csp_violations() == []

    await in_thread(scenario)


async def test_create_an_api_key_shown_once_and_revoke_it(site: tuple[Platform, Browser], backend: str) -> None:
    from selenium.webdriver.common.by import By

    p, b = site
    acc = await make_account(p)

    def scenario() -> None:
        b.login(acc["username"])
        b.get("/dashboard/account")
        b.fill("#key-label", "ci")
        b.css("#create-key").click()
        key = b.wait(lambda: b.text_of("#new-key"), what="the new key")
        assert b.run(p.accounts.authenticate_api_key(key)).id == acc["account_id"]
        b.screenshot(f"account-{backend}")
        b.get("/dashboard/account")
        assert key not in b.driver.page_source  # shown once
        row = next(r for r in b.all("tr.key-row") if r.get_attribute("data-prefix") == key[:8])
        row.find_element(By.CSS_SELECTOR, "button.revoke").click()
        b.wait(lambda: "revoked" in b.text_of("#notice"), what="the revoke notice")
        b.wait(lambda: "revoked" in next(r for r in b.all("tr.key-row") if r.get_attribute("data-prefix") == key[:8]).text,
               what="the key shown revoked")
        with pytest.raises(Unauthorized):
            b.run(p.accounts.authenticate_api_key(key))
        # the account's first key still works
        assert b.run(p.accounts.authenticate_api_key(acc["api_key"])).id == acc["account_id"]

    await in_thread(scenario)


async def test_retry_a_failed_callback_from_the_account_page(
    site: tuple[Platform, Browser], receiver: Receiver, backend: str,
) -> None:
    p, b = site
    acc = await make_account(p)
    await p.accounts.set_callbacks(acc["account_id"], {"dlr_url": receiver.url + "/dlr"})
    receiver.status = 500
    await send(p, acc["account_id"], ["0708400000"])

    async def failed() -> list[dict[str, Any]]:
        return await p.callback_log.list(acc["account_id"], "failed", 10, None)

    cb = (await given_up(p, acc["account_id"]))[0]
    tried = len(receiver.requests)
    receiver.status = 200

    def scenario() -> None:
        b.login(acc["username"])
        b.get("/dashboard/account")
        assert str(cb["id"]) in b.text_of("#failed-callbacks")
        b.css(f"#retry-{cb['id']}").click()
        b.wait(lambda: b.all(f"#retried-{cb['id']}"), what="the retry acknowledged")
        b.screenshot(f"account-retry-{backend}")

    await in_thread(scenario)
    await receiver.wait_for(tried + 1)
    for _ in range(200):
        if not await failed():
            break
        await asyncio.sleep(0.05)
    assert not await failed()


async def test_an_admin_pauses_and_resumes_a_connector(site: tuple[Platform, Browser], backend: str) -> None:
    from selenium.webdriver.common.by import By

    p, b = site
    smsc = SmscSimulator("127.0.0.1", 0, system_id="ujumbe", password="s3cret", receipt_delay_ms=20)
    await smsc.start()
    try:
        await p.routing.add_connector({"name": "op-a", "host": "127.0.0.1", "port": smsc.port,
                                       "system_id": "ujumbe", "password": "s3cret"})

        def row() -> Any:
            return next(r for r in b.all("tr.connector") if r.get_attribute("data-name") == "op-a")

        def state() -> str:
            return str(row().find_element(By.CSS_SELECTOR, ".cstate").text)

        def scenario() -> None:
            b.get("/dashboard/admin")
            b.wait(lambda: "/dashboard/admin/login" in b.driver.current_url, what="the admin login")
            b.fill("#token", "not the token")
            b.css("#login-submit").click()
            b.wait(lambda: "not the admin token" in b.text_of("#login-error"), what="the refusal")
            b.fill("#token", ADMIN)
            b.css("#login-submit").click()
            b.wait(lambda: state() == "up" and "1 / 1" in row().text, what="op-a up, its one bind")
            # (the table is polled: each read finds its rows again)
            sim = b.fresh(lambda: next(r.text for r in b.all("tr.connector") if r.get_attribute("data-name") == "simulator"))
            assert "standby" in sim  # an operator connector carries the traffic now
            b.mark_page()
            b.screenshot(f"admin-connectors-{backend}")
            b.fresh(lambda: row().find_element(By.CSS_SELECTOR, "button.pause").click())
            b.wait(lambda: state() == "paused", what="op-a paused")
            b.wait(lambda: "not running here" in row().text, what="op-a unbound")
            assert b.same_page()
            b.fresh(lambda: row().find_element(By.CSS_SELECTOR, "button.resume").click())
            b.wait(lambda: state() == "up", what="op-a up again")
            assert b.csp_violations() == []

        await in_thread(scenario)
        assert (await p.routing.get_connector("op-a"))["enabled"]
    finally:
        await smsc.stop()


async def test_another_accounts_message_cannot_be_opened_through_the_pages(
    site: tuple[Platform, Browser], backend: str,
) -> None:
    p, b = site
    mine, theirs = await make_account(p), await make_account(p)
    [their_id] = await send(p, theirs["account_id"], ["0708400000"], text="their secret")

    def scenario() -> None:
        b.login(mine["username"])
        for path in (f"/dashboard/messages/{their_id}", f"/dashboard/messages/{their_id}/live"):
            b.get(path)
            assert "their secret" not in b.driver.page_source
            assert f"No message {their_id}" in b.driver.page_source
        b.get("/dashboard/messages?request_id=&to=0708400000")
        assert "their secret" not in b.driver.page_source and b.all("#no-messages")
        b.get("/dashboard/admin")  # a tenant's session is not the operator's
        b.wait(lambda: "/dashboard/admin/login" in b.driver.current_url, what="the admin login")

    await in_thread(scenario)


async def test_a_campaign_from_an_uploaded_csv_runs_live_to_completed_and_its_report_downloads(
    site: tuple[Platform, Browser], backend: str, tmp_path: Path,
) -> None:
    p, b = site
    acc = await make_account(p)
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("number,name\n0708400000,Asha\n0708410000,Baraka\n12345,Chausiku\n")
    downloads = tmp_path / "downloads"

    def scenario() -> None:
        b.login(acc["username"])
        b.get("/dashboard/campaigns")
        b.fill("#c-name", "Soko")
        b.fill("#c-message", "Habari {name}, soko ni kesho")
        b.css("#c-create").click()
        b.wait(lambda: b.all("#upload"), what="the campaign's page")
        b.css("#c-file").send_keys(str(contacts))
        b.css("#c-upload").click()
        b.wait(lambda: "import=" in b.driver.current_url, what="the upload taken")
        b.wait(lambda: "2 imported, 1 refused" in b.text_of("#import-result"), what="the import job's result")
        error = b.text_of("#import-errors")
        assert "4" in error and "12345" in error  # the row number as the spreadsheet shows it, and the number
        assert "Baraka" in b.text_of("#preview") and "254708410000" in b.text_of("#numbers")
        b.screenshot(f"campaign-imported-{backend}")
        b.css("#c-begin").click()
        b.wait(lambda: "2 numbers running" in b.text_of("#notice"), what="the run begun")
        b.mark_page()
        assert b.text_of("#c-status") == "running"  # the receipts take 2.5 s
        b.wait_text("#c-status", "completed", timeout=30)
        assert b.text_of("#n-completed") == "2" and b.text_of("#c-settled") == "2"
        assert b.same_page(), "the progress came by a reload, not live"
        b.screenshot(f"campaign-completed-{backend}")
        b.css("#c-report").click()
        link = b.wait(lambda: b.css("#report-csv"), what="the report written")
        b.download_to(downloads)
        link.click()
        b.wait(lambda: [f for f in downloads.glob("*.csv")], what="the report downloaded")
        b.get("/dashboard/campaigns")
        assert "Soko" in b.text_of("#campaigns") and "completed" in b.text_of("#campaigns")
        b.screenshot(f"campaigns-{backend}")
        assert b.csp_violations() == []

    await in_thread(scenario)
    [report] = list(downloads.glob("*.csv"))
    text = report.read_text()
    assert "254708400000" in text and "Asha" in text and "completed" in text and "12345" not in text


async def test_a_failed_callbacks_attempts_are_listed_on_the_message_page_and_it_is_retried(
    site: tuple[Platform, Browser], receiver: Receiver, backend: str,
) -> None:
    p, b = site
    acc = await make_account(p)
    await p.accounts.set_callbacks(acc["account_id"], {"dlr_url": receiver.url + "/dlr?token=s3cret"})
    receiver.status = 503
    receiver.answer = "busy"
    [mid] = await send(p, acc["account_id"], ["0708400000"])

    cb = (await given_up(p, acc["account_id"], mid))[-1]
    receiver.status, receiver.answer = 200, "OK"
    # final, so the page stands still (a message on its way is re-drawn every second)
    for _ in range(200):
        if (await p.messaging.message(acc["account_id"], mid, with_events=False))["state"] == "delivered":
            break
        await asyncio.sleep(0.05)

    def scenario() -> None:
        b.login(acc["username"])
        b.get(f"/dashboard/messages/{mid}")
        rows = b.all(f"#attempts-{cb['id']} tr.attempt")
        assert len(rows) == cb["attempts"] > 1
        assert all("HTTP 503" in r.text and "busy" in r.text for r in rows)
        assert "token=***" in rows[0].text and "s3cret" not in b.driver.page_source
        b.screenshot(f"message-attempts-{backend}")
        b.css(f"#retry-{cb['id']}").click()
        b.wait(lambda: b.all(f"#retried-{cb['id']}"), what="the retry acknowledged")

        def answered() -> bool:
            b.get(f"/dashboard/messages/{mid}")
            last = b.all(f"#attempts-{cb['id']} tr.attempt")[-1]
            return "HTTP 200" in last.text and "delivered" in b.text_of(f"#callback-{cb['id']}")

        b.wait(answered, what="the retried callback delivered")
        assert len(b.all(f"#attempts-{cb['id']} tr.attempt")) == cb["attempts"] + 1
        assert b.csp_violations() == []

    await in_thread(scenario)


async def test_an_admin_adds_a_route_and_a_price_from_the_pages(site: tuple[Platform, Browser], backend: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    p, b = site

    def scenario() -> None:
        b.get("/dashboard/admin/login")
        b.fill("#token", ADMIN)
        b.css("#login-submit").click()
        b.wait(lambda: b.all("tr.connector"), what="the connectors board")
        b.get("/dashboard/admin/routes")
        Select(b.css("#r-kind")).select_by_visible_text("prefix")
        b.fill("#r-value", "2547x")
        b.css("#r-add").click()
        b.wait(lambda: "A prefix is 1-15 digits" in b.text_of("#route-error"), what="the refusal")
        b.fill("#r-value", "2547")
        b.fill("#r-priority", "10")
        Select(b.css("#r-connector")).select_by_visible_text("simulator")
        b.css("#r-add").click()
        b.wait(lambda: "added" in b.text_of("#notice"), what="the route added")
        assert [r.find_element(By.NAME, "value").get_attribute("value") for r in b.all("tr.route")] == ["2547"]
        b.fill("#p-network", "Safaricom")
        b.fill("#p-amount", "0.8")
        b.css("#p-set").click()
        b.wait(lambda: "0.8 credits a part" in b.text_of("#notice"), what="the price set")
        assert "Safaricom" in b.text_of("#prices")
        b.screenshot(f"admin-routes-{backend}")
        assert b.csp_violations() == []

    await in_thread(scenario)
    [route] = await p.routing.list_routes()
    assert (route["kind"], route["value"], route["connector"], route["priority"]) == ("prefix", "2547", "simulator", 10)
    assert (await p.messaging.prices()).cost("Safaricom", 1) == 8000


async def test_place_a_call_from_the_send_form_listen_first_and_watch_it_complete(
    site: tuple[Platform, Browser], backend: str,
) -> None:
    p, b = site
    acc = await make_account(p)

    def scenario() -> str:
        b.login(acc["username"])
        b.get("/dashboard/send")
        assert not b.css("#voice-fields").is_displayed()
        from selenium.webdriver.support.ui import Select

        Select(b.css("#channel")).select_by_value("voice")
        b.wait(lambda: b.css("#voice-fields").is_displayed(), what="the call's fields")
        assert not b.css("#sender-field").is_displayed()  # a call has a caller id, not a sender name
        assert not b.css("#sms-preview").is_displayed()  # nor SMS parts
        b.fill("#to", "0708400100")  # the simulator answers and plays it to the end
        b.fill("#text", "नमस्ते, तपाईंको अर्डर तयार छ।")
        Select(b.css("#voice")).select_by_value("np_prasanna")
        b.fill("#length_factor", "1.2")
        b.css("#listen").click()
        b.wait(lambda: int(b.css("#listen-audio").get_attribute("data-bytes") or 0) > 8000, what="the speech")
        assert b.css("#listen-audio").get_attribute("src").startswith("blob:")
        b.screenshot(f"send-call-{backend}")
        b.css("#send-submit").click()
        mid = b.wait(lambda: b.text_of("#sent a.msg-link"), what="the sent page")
        b.mark_page()
        assert b.text_of(f"#state-{mid}") != "delivered · completed"  # it rings 2.5 s first
        b.wait_text(f"#state-{mid}", "delivered · completed", timeout=30)
        assert b.same_page(), "the state changed by a reload, not live"
        b.css("#sent a.msg-link").click()
        b.wait_text("#call-outcome", "completed")
        assert b.text_of("#call-reason") == "played_to_end" and b.text_of("#call-sip").startswith("200 OK")
        b.screenshot(f"message-call-{backend}")
        assert b.csp_violations() == []
        return mid

    mid = await in_thread(scenario)
    msg = await p.messaging.message(acc["account_id"], int(mid))
    assert msg["channel"] == "voice" and msg["call"]["outcome"] == "completed"
    assert msg["state"] == "delivered"
