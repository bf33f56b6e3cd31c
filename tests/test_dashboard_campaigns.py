"""The dashboard's campaign pages over HTTP (the browser test is in
test_dashboard_browser.py): create, upload a spreadsheet, see its first rows
and the rows refused, begin, watch it finish, download the report; pause and
stop; another account's campaign and jobs answer 404."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import httpx

from tests.conftest import eventually, make_account
from tests.test_dashboard import csrf_of, logged_in
from ujumbe.runtime import Platform

CSV = "number,name\n0708400000,Asha\n0708410000,Baraka\n12,Chausiku\n0708400000,Asha again\n"


async def new_campaign(c: httpx.AsyncClient, name: str = "Promo", message: str = "Habari {name}") -> tuple[int, str]:
    token = csrf_of((await c.get("/dashboard/campaigns")).text)
    r = await c.post("/dashboard/campaigns", data={"csrf": token, "name": name, "message": message})
    assert r.status_code == 303, r.text
    m = re.fullmatch(r"/dashboard/campaigns/(\d+)", r.headers["location"])
    assert m
    return int(m.group(1)), token


async def upload(c: httpx.AsyncClient, cid: int, token: str, body: str = CSV, name: str = "contacts.csv") -> int:
    r = await c.post(f"/dashboard/campaigns/{cid}/contacts", data={"csrf": token},
                     files={"file": (name, body.encode(), "text/csv")})
    assert r.status_code == 303, r.text
    m = re.search(r"import=(\d+)", r.headers["location"])
    assert m
    return int(m.group(1))


async def test_a_campaign_from_an_uploaded_csv_runs_to_completed_and_its_report_downloads(platform: Platform) -> None:
    acc = await make_account(platform)
    async for c in logged_in(platform, acc):
        cid, token = await new_campaign(c)
        job = await upload(c, cid, token)

        async def imported() -> str | None:
            page = (await c.get(f"/dashboard/campaigns/{cid}/live?import={job}")).text
            return page if 'id="import-result"' in page else None

        live = await eventually(imported)
        assert "4 rows: 2 imported, 2 refused." in live
        errors = re.findall(r'<tr class="row-error"><td>(\d+)</td><td>([^<]*)</td><td>([^<]+)</td>', live)
        assert [(r, n) for r, n, _ in errors] == [("4", "12"), ("5", "0708400000")]
        assert "already in this campaign" in errors[1][2]
        page = (await c.get(f"/dashboard/campaigns/{cid}?import={job}")).text
        preview = page[page.index('id="preview"'):].split("</table>")[0]
        assert "0708400000" in preview and "name=Baraka" in preview and "<td>2</td>" in preview
        assert "254708410000" in page  # the numbers imported
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|\sstyle\s*=", page)  # CSP: nothing inline

        r = await c.post(f"/dashboard/campaigns/{cid}/begin?import={job}", data={"csrf": token})
        assert r.status_code == 200 and "2 numbers running" in r.text, r.text[:2000]

        async def completed() -> str | None:
            page = (await c.get(f"/dashboard/campaigns/{cid}/live")).text
            return page if 'id="c-status">completed<' in page else None

        live = await eventually(completed, timeout=30)
        assert 'id="n-completed">2<' in live and 'id="c-settled">2<' in live
        assert "hx-get" not in live.split(">")[0]  # finished: the page stops polling

        r = await c.post(f"/dashboard/campaigns/{cid}/report", data={"csrf": token})
        assert r.status_code == 303
        report = int(re.search(r"report=(\d+)", r.headers["location"]).group(1))  # type: ignore[union-attr]

        async def written() -> bool:
            return 'id="report-csv"' in (await c.get(f"/dashboard/campaigns/{cid}/live?report={report}")).text

        await eventually(written)
        r = await c.get(f"/dashboard/jobs/{report}/files/csv")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert f'campaign-{cid}-report.csv' in r.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert sorted((x["number"], x["status"], x["name"]) for x in rows) == [
            ("254708400000", "completed", "Asha"), ("254708410000", "completed", "Baraka")]
        xlsx = await c.get(f"/dashboard/jobs/{report}/files/xlsx")
        assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
        # a re-run of the completed numbers holds and sends again
        r = await c.post(f"/dashboard/campaigns/{cid}/begin", data={"csrf": token, "status-completed": "1"})
        assert r.status_code == 200 and "2 numbers running" in r.text
        r = await c.post(f"/dashboard/campaigns/{cid}/pause", data={"csrf": token})
        assert r.status_code in (200, 409)  # 409: it finished before the pause
        listing = (await c.get("/dashboard/campaigns")).text
        assert f'href="/dashboard/campaigns/{cid}"' in listing and "Promo" in listing


async def test_pause_resume_and_stop_give_back_what_is_held(platform: Platform) -> None:
    platform.settings.campaign_rate = 1
    acc = await make_account(platform)
    async for c in logged_in(platform, acc):
        cid, token = await new_campaign(c, message="Habari")
        account = await platform.accounts.get(acc["account_id"])
        await platform.campaigns.add_numbers(account, cid, [(f"07084{n:05d}", {}) for n in range(10, 40)])
        await platform.campaigns.update(account, cid, rate=1)
        r = await c.post(f"/dashboard/campaigns/{cid}/begin", data={"csrf": token})
        assert "30 numbers running" in r.text
        r = await c.post(f"/dashboard/campaigns/{cid}/pause", data={"csrf": token})
        assert r.status_code == 200 and 'id="c-status">paused<' in r.text and 'id="c-resume"' in r.text
        r = await c.post(f"/dashboard/campaigns/{cid}/resume", data={"csrf": token})
        assert 'id="c-status">running<' in r.text
        r = await c.post(f"/dashboard/campaigns/{cid}/stop", data={"csrf": token})
        assert r.status_code == 200 and 'id="c-status">terminated<' in r.text
        assert (await platform.campaigns.get(account, cid))["held_units"] == 0
        r = await c.post(f"/dashboard/campaigns/{cid}/stop", data={"csrf": token})
        assert r.status_code == 409 and 'id="error"' in r.text
        # bad input is a page, not a 500
        for data in ({"csrf": token, "name": ""}, {"csrf": token, "name": "x", "rate": "fast"}):
            r = await c.post("/dashboard/campaigns", data=data)
            assert r.status_code == 400 and 'id="campaign-error"' in r.text
        r = await c.post(f"/dashboard/campaigns/{cid}/contacts", data={"csrf": token},
                         files={"file": ("notes.pdf", b"%PDF", "application/pdf")})
        assert r.status_code == 400 and "neither .xlsx nor .csv" in r.text
        r = await c.post(f"/dashboard/campaigns/{cid}/contacts", files={"file": ("a.csv", b"0708400000\n", "text/csv")})
        assert r.status_code == 403  # no CSRF token in the multipart form


async def test_another_accounts_campaign_and_report_answer_404(platform: Platform) -> None:
    mine, theirs = await make_account(platform), await make_account(platform)
    their_account = await platform.accounts.get(theirs["account_id"])
    camp, _ = await platform.campaigns.create(their_account, name="Theirs secret", services="SMS", message="x",
                                              numbers_in=[("0708400000", {})])
    report = await platform.jobs.start_report(their_account, camp["id"])
    cid = camp["id"]
    async for c in logged_in(platform, mine):
        token = csrf_of((await c.get("/dashboard/campaigns")).text)
        for path in (f"/dashboard/campaigns/{cid}", f"/dashboard/campaigns/{cid}/live",
                     f"/dashboard/jobs/{report['id']}/files/csv", "/dashboard/campaigns/abc"):
            r = await c.get(path)
            assert r.status_code == 404 and "Theirs secret" not in r.text, path
        for action in ("begin", "pause", "resume", "stop", "report", "contacts", "nonsense"):
            r = await c.post(f"/dashboard/campaigns/{cid}/{action}", data={"csrf": token})
            assert r.status_code == 404, action
        r = await c.post(f"/dashboard/campaigns/{cid}/contacts", data={"csrf": token},
                         files={"file": ("a.csv", b"0708400000\n", "text/csv")})
        assert r.status_code == 404
        # their job named on my campaign's page is not shown
        my_cid, _ = await new_campaign(c)
        page = (await c.get(f"/dashboard/campaigns/{my_cid}?report={report['id']}")).text
        assert f"Report #{report['id']}" not in page
        assert "Theirs secret" not in (await c.get("/dashboard/campaigns")).text
    assert (await platform.campaigns.get(their_account, cid))["status"] == "not started"
