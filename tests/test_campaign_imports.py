"""Contacts in bulk over the native API: csv and xlsx uploads as multipart,
numbers read in the account's region (spreadsheet floats too), invalid rows
reported with their row number and reason while the rest import, as a job
with progress (API and CLI); reports as a job, downloadable as csv and xlsx."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import openpyxl

from tests.conftest import auth, client_of, eventually, make_account
from tests.test_cli import clean_env, ok, run
from ujumbe.runtime import Platform


def xlsx(rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for r in rows:
        sheet.append(r)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


async def finished(api: Any, account: dict[str, Any], job_id: int) -> dict[str, Any]:
    async def done() -> Any:
        j = (await api.get(f"/v1/jobs/{job_id}", headers=auth(account))).json()
        return j if j["status"] in ("done", "failed") else None

    return await eventually(done, timeout=60)


async def new_campaign(api: Any, account: dict[str, Any], **body: Any) -> dict[str, Any]:
    r = await api.post("/v1/campaigns", headers=auth(account), json={"name": "Bulk", "services": "SMS", **body})
    assert r.status_code == 201, r.text
    return r.json()["campaign"]


async def test_an_xlsx_imports_numbers_as_floats_in_the_accounts_region(platform: Platform, tmp_path: Path) -> None:
    account = await make_account(platform, region="NP")
    data = xlsx([
        ["number", "tags_name", "tags_age"],
        [9843818700.0, "Adwait", 25],
        [9851022343.0, "Sita", 31.0],
        ["hello", "Bad", 1],          # row 4: not a number
        [None, "Nobody", 2],           # row 5: no number
        [9843818700.0, "Again", 3],    # row 6: already in the campaign
        [],                            # blank rows are skipped
        ["+9779841000001", None, None],
    ])
    async with client_of(platform) as api:
        camp = await new_campaign(api, account, message="नमस्कार, {tags_name}")
        r = await api.post(f"/v1/campaigns/{camp['id']}/contacts", headers=auth(account),
                           files={"file": ("numbers.xlsx", data, "application/octet-stream")})
        assert r.status_code == 202, r.text
        job = await finished(api, account, r.json()["id"])
        assert job["status"] == "done" and job["progress"] == 100.0 and job["total"] == 6
        result = job["result"]
        assert result["imported"] == 3 and result["invalid"] == 3
        errors = {e["row"]: e for e in result["errors"]}
        assert set(errors) == {4, 5, 6}
        assert "contains letters" in errors[4]["reason"]
        assert errors[5]["reason"] == "no number in this row"
        assert "already in this campaign" in errors[6]["reason"]
        nums = (await api.get(f"/v1/campaigns/{camp['id']}/numbers", headers=auth(account))).json()["numbers"]
        assert [n["number"] for n in nums] == ["9779843818700", "9779851022343", "9779841000001"]
        assert nums[0]["tags"] == {"tags_name": "Adwait", "tags_age": 25}
        assert nums[1]["tags"] == {"tags_name": "Sita", "tags_age": 31}
        got = (await api.get(f"/v1/campaigns/{camp['id']}", headers=auth(account))).json()
        assert got["usable_tags"] == ["tags_age", "tags_name"]

        # the CLI shows the same job (SQLite: the CLI reads the platform's data dir)
        if platform.store.dialect == "sqlite":
            env = clean_env(UJUMBE_DATA_DIR=str(platform.settings.data_dir),
                            UJUMBE_SECRET_KEY=platform.settings.secret_key)
            shown = ok(await asyncio.to_thread(run, env, "jobs", "show", str(job["id"])))
            assert shown["progress"] == 100.0 and shown["result"]["imported"] == 3

        # another account sees neither the job nor the campaign
        other = await make_account(platform)
        assert (await api.get(f"/v1/jobs/{job['id']}", headers=auth(other))).status_code == 404
        assert (await api.get(f"/v1/campaigns/{camp['id']}", headers=auth(other))).status_code == 404


async def test_a_csv_imports_and_bad_uploads_get_clear_errors(platform: Platform) -> None:
    account = await make_account(platform)
    body = "phone,tags_name\n0708400100,Wanjiru\n0708400101.0,Otieno\n12345,Short\n"
    async with client_of(platform) as api:
        camp = await new_campaign(api, account)
        r = await api.post(f"/v1/campaigns/{camp['id']}/contacts", headers=auth(account),
                           files={"file": ("contacts.csv", body.encode(), "text/csv")})
        job = await finished(api, account, r.json()["id"])
        assert job["result"]["imported"] == 2 and job["result"]["errors"][0]["row"] == 4
        # not multipart, no file, not a spreadsheet, a broken xlsx
        r = await api.post(f"/v1/campaigns/{camp['id']}/contacts", headers=auth(account), json={"x": 1})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_upload"
        r = await api.post(f"/v1/campaigns/{camp['id']}/contacts", headers=auth(account), data={"x": "1"},
                           files={"other": ("a.csv", b"1", "text/csv")})
        assert r.status_code == 400 and r.json()["error"]["code"] == "missing_file"
        r = await api.post(f"/v1/campaigns/{camp['id']}/contacts", headers=auth(account),
                           files={"file": ("a.pdf", b"%PDF", "application/pdf")})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_file"
        r = await api.post(f"/v1/campaigns/{camp['id']}/contacts", headers=auth(account),
                           files={"file": ("a.xlsx", b"PK not a zip", "application/octet-stream")})
        job = await finished(api, account, r.json()["id"])
        assert job["status"] == "failed" and "not a readable xlsx" in job["error"]
        r = await api.post("/v1/campaigns/999999/contacts", headers=auth(account),
                           files={"file": ("contacts.csv", body.encode(), "text/csv")})
        assert r.status_code == 404


async def test_ten_thousand_rows_import_with_progress_and_a_report_downloads(platform: Platform) -> None:
    account = await make_account(platform, credits="100000")
    # none ending in 0001-0007: the simulator fails those on purpose
    picked = [i for i in range(10_000, 20_020) if not 1 <= i % 10_000 <= 7][:10_000]
    rows = [["number", "tags_name"]] + [[float(f"7084{i:05d}"), f"n{i}"] for i in picked]
    async with client_of(platform) as api:
        camp = await new_campaign(api, account, message="Hi {tags_name}", rate=5000)
        r = await api.post(f"/v1/campaigns/{camp['id']}/contacts", headers=auth(account),
                           files={"send_to_number_file": ("n.xlsx", xlsx(rows), "application/octet-stream")})
        assert r.status_code == 202
        seen: set[float] = set()

        async def done() -> Any:
            j = (await api.get(f"/v1/jobs/{r.json()['id']}", headers=auth(account))).json()
            seen.add(j["progress"])
            return j if j["status"] == "done" else None

        job = await eventually(done, timeout=120, interval=0.01)
        assert job["result"]["imported"] == 10_000 and job["result"]["invalid"] == 0
        assert any(0 < p < 100 for p in seen) or len(seen) == 1, seen  # a fast import may finish between polls
        r = await api.post(f"/v1/campaigns/{camp['id']}/begin", headers=auth(account), json={})
        assert r.status_code == 200, r.text
        assert r.json()["credits_on_hold"] == 10_000

        async def complete() -> Any:
            s = (await api.get(f"/v1/campaigns/{camp['id']}/summary", headers=auth(account))).json()
            return s if s["by_status"]["completed"] == 10_000 else None

        summary = await eventually(complete, timeout=120, interval=0.2)
        assert summary["credit_consumed"] == 10_000

        r = await api.post(f"/v1/campaigns/{camp['id']}/reports", headers=auth(account))
        assert r.status_code == 202
        job = await finished(api, account, r.json()["id"])
        assert job["status"] == "done", job
        r = await api.get(f"/v1/jobs/{job['id']}/files/csv", headers=auth(account))
        assert r.headers["content-type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(r.text)))
        assert table[0][:5] == ["id", "number", "campaign", "status", "credit_consumed"] and len(table) == 10_001
        assert table[1][1:5] == ["254708410000", "Bulk", "completed", "1"] and table[1][-1] == "n10000"
        r = await api.get(f"/v1/jobs/{job['id']}/files/xlsx", headers=auth(account))
        book = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)
        sheet_rows = list(book.worksheets[0].iter_rows(values_only=True))
        assert len(sheet_rows) == 10_001 and sheet_rows[1][3] == "completed"
        assert (await api.get(f"/v1/jobs/{job['id']}/files/pdf", headers=auth(account))).status_code == 400


async def test_native_campaign_errors_are_clear(platform: Platform) -> None:
    account = await make_account(platform, credits="1")
    async with client_of(platform) as api:
        voice = platform.messaging.channels
        platform.messaging.channels = voice - {"voice"}  # a server without a voice channel
        r = await api.post("/v1/campaigns", headers=auth(account), json={"name": "Calls", "services": "PHONE"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "channel_not_configured"
        platform.messaging.channels = voice
        r = await api.post("/v1/campaigns", headers=auth(account), json={"name": "X", "services": "FAX"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_services"
        r = await api.post("/v1/campaigns", headers=auth(account), json={"name": "X", "bogus": 1})
        assert r.status_code == 400 and r.json()["error"]["code"] == "validation_error"
        camp = await new_campaign(api, account, message="Hi", numbers=["0708400100", "0708400101", "12"])
        r = await api.get(f"/v1/campaigns/{camp['id']}/numbers", headers=auth(account))
        assert len(r.json()["numbers"]) == 2
        for body, code in (({"status": ["lost"]}, "invalid_status"), ({"schedule_at": "soon"}, "invalid_schedule"),
                           ({"numbers": [999999]}, "invalid_numbers"), ({"rate": 0}, "invalid_rate")):
            r = await api.post(f"/v1/campaigns/{camp['id']}/begin", headers=auth(account), json=body)
            assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text
        r = await api.post(f"/v1/campaigns/{camp['id']}/begin", headers=auth(account), json={})
        assert r.status_code == 402 and r.json()["error"]["details"] == {"cost": 2, "balance": 1}
        r = await api.post(f"/v1/campaigns/{camp['id']}/pause", headers=auth(account))
        assert r.status_code == 409
        r = await api.get(f"/v1/campaigns/{camp['id']}/numbers?status=lost", headers=auth(account))
        assert r.status_code == 400
        r = await api.put("/v1/account/time-zone", headers=auth(account), json={"time_zone": "Mars/Base"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_time_zone"
        r = await api.put("/v1/account/time-zone", headers=auth(account), json={"time_zone": "Asia/Kathmandu"})
        assert r.json() == {"time_zone": "Asia/Kathmandu"}
        doc = (await api.get("/openapi.json")).json()
        assert "/v1/campaigns/{id}/begin" in doc["paths"] or "/v1/campaigns/{id:int}/begin" in doc["paths"]


async def test_a_run_waits_for_the_import(platform: Platform) -> None:
    account = await make_account(platform)
    acc = await platform.accounts.get(account["account_id"])
    camp, _ = await platform.campaigns.create(acc, name="Half", services="SMS", message="Hi",
                                              numbers_in=[("0708400100", {})])
    # a queued import (the job worker has not taken it yet, or is reading it)
    job_id = await platform.store.run(lambda tx: tx.fetchval(
        "INSERT INTO jobs (account_id, kind, campaign_id, status, lease_until, created_at, updated_at) "
        "VALUES (?, 'import', ?, 'running', ?, 0, 0) RETURNING id", acc.id, camp["id"], 2**50))  # leased: left alone
    async with client_of(platform) as api:
        r = await api.post(f"/v1/campaigns/{camp['id']}/begin", headers=auth(account), json={})
        assert r.status_code == 409 and r.json()["error"]["code"] == "import_running"
        await platform.store.run(lambda tx: tx.execute("UPDATE jobs SET status = 'done' WHERE id = ?", job_id))
        r = await api.post(f"/v1/campaigns/{camp['id']}/begin", headers=auth(account), json={})
        assert r.status_code == 200, r.text
