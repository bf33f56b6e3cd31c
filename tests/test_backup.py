"""`ujumbe backup` under load and `ujumbe restore`: nothing accepted before the backup is lost."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from pathlib import Path

import httpx

from tests.conftest import UNDER_LOAD, eventually, free_port
from tests.test_processes import UJUMBE, cli, env_for, start_server, stop


@UNDER_LOAD
async def test_backup_under_load_and_restore_keep_every_accepted_message(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", None)
    account = cli(env, "accounts", "create", "--name", "Load", "--email", "load@example.com",
                  "--password", "pass-word-1", "--credits", "100000")
    headers = {"authorization": f"Bearer {account['api_key']}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await start_server(env, port)
    accepted: list[int] = []
    stopping = asyncio.Event()

    async def sender(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while not stopping.is_set():
            i += 1
            r = await client.post("/v1/messages", headers=headers, json={"to": f"0708{n:02d}{i:03d}9", "text": "load"})
            assert r.status_code == 202, r.text
            accepted.extend(m["id"] for m in r.json()["messages"])

    dest = tmp_path / "backups" / "ujumbe.backup"
    dest.parent.mkdir()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            senders = [asyncio.create_task(sender(client, n)) for n in range(10)]
            await eventually(lambda: asyncio.sleep(0, len(accepted) >= 200), timeout=30)
            before = list(accepted)  # answered 202 before the backup started
            backup = await asyncio.create_subprocess_exec(
                *UJUMBE, "backup", str(dest), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await backup.communicate()
            assert backup.returncode == 0, err.decode()
            during = len(accepted) - len(before)
            stopping.set()
            await asyncio.gather(*senders)
        assert during > 0, "the sends did not go on while the backup ran"
        assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600

        # a running server keeps its data: restore refuses and says what to do
        refused = subprocess.run([*UJUMBE, "restore", str(dest)], env=env, capture_output=True, text=True)
        assert refused.returncode == 1
        assert "server is running" in refused.stderr and "stop it" in refused.stderr
    finally:
        stop(proc)

    restored = subprocess.run([*UJUMBE, "restore", str(dest)], env=env, capture_output=True, text=True)
    assert restored.returncode == 0, restored.stderr
    proc = await start_server(env, port)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for mid in before:
                r = await client.get(f"/v1/messages/{mid}", headers=headers)
                assert r.status_code == 200, f"message {mid}, accepted before the backup, is missing"
            r = await client.post("/v1/messages", headers=headers, json={"to": "0708999999", "text": "after"})
            assert r.status_code == 202, r.text
            mid = r.json()["messages"][0]["id"]

            async def delivered() -> bool:
                return (await client.get(f"/v1/messages/{mid}", headers=headers)).json()["state"] == "delivered"

            await eventually(delivered, timeout=30)
    finally:
        stop(proc)


def test_backup_and_restore_explain_what_they_cannot_do(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", None)
    missing = subprocess.run([*UJUMBE, "backup", str(tmp_path / "b.db")], env=env, capture_output=True, text=True)
    assert missing.returncode == 1 and "there is no database" in missing.stderr
    cli(env, "migrate")
    # docs/operations.md's /backups/... on a machine without that directory: the fix, not a traceback
    nowhere = subprocess.run([*UJUMBE, "backup", str(tmp_path / "backups" / "u.db")], env=env, capture_output=True,
                             text=True)
    assert nowhere.returncode == 1 and f"create it first (mkdir -p {tmp_path / 'backups'})" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr
    not_a_backup = tmp_path / "junk"
    not_a_backup.write_text("hello")
    bad = subprocess.run([*UJUMBE, "restore", str(not_a_backup)], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "is not an Ujumbe backup" in bad.stderr
    pg = subprocess.run([*UJUMBE, "backup", str(tmp_path / "b.db")], capture_output=True, text=True,
                        env={**env, "UJUMBE_DATABASE_URL": "postgresql://postgres@127.0.0.1/x"})
    assert pg.returncode == 2 and "pg_dump" in pg.stderr
