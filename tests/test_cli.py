"""The ``ujumbe`` command as a new operator meets it: the real command in
subprocesses against a temporary data dir (and PostgreSQL where it matters).

What the server and every other command agree on (the data dir and the
database), how an account is named, ports that are taken, the request log and
forwarded addresses, file modes, and passwords kept off the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import select
import shlex
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

_SCRIPT = Path(sys.executable).with_name("ujumbe")  # the console script pip installed beside this Python
UJUMBE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "ujumbe"]


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment without any UJUMBE_ setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UJUMBE_")}
    env.update({"UJUMBE_SIM_RECEIPT_DELAY_MS": "20-50", "UJUMBE_SMPP_PORT": "off", **extra})
    return env


def run(env: dict[str, str], *args: str, cwd: Path | None = None, stdin: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*UJUMBE, *args], env=env, cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=timeout, stdin=None if stdin is not None else subprocess.DEVNULL)


def ok(out: subprocess.CompletedProcess[str]) -> Any:
    import json

    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class Server:
    """``ujumbe serve`` in a subprocess, its log lines collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    async def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if m := re.search(pattern, line):
                    return m
            if self.proc.returncode is not None or self._reader.done():
                await asyncio.sleep(0.2)  # the last lines
                break
            await asyncio.sleep(0.05)
        log = "\n".join(self.lines)
        raise AssertionError(f"no log line matches {pattern!r}; the server said:\n{log}")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 5)


@contextlib.asynccontextmanager
async def serving(env: dict[str, str], *args: str, cwd: Path | None = None) -> AsyncIterator[Server]:
    proc = await asyncio.create_subprocess_exec(
        *UJUMBE, "serve", *args, env={**env, "UJUMBE_LOG_LEVEL": "INFO"}, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    server = Server(proc)
    try:
        await server.wait_for(r"HTTP listening on http://")
        yield server
    finally:
        await server.stop()


def on_terminal(env: dict[str, str], args: list[str], answers: list[tuple[str, str]],
                timeout: float = 60) -> tuple[int, str]:
    """Run the command with a terminal (a pty) as its controlling tty, typing
    each answer when its prompt appears; its exit status and all it wrote."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the command at once
        os.execve(UJUMBE[0], [*UJUMBE, *args], env)
    seen, pending = b"", list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if pending and pending[0][0].encode() in seen:
                prompt, answer = pending.pop(0)
                seen = seen.replace(prompt.encode(), b"<" + prompt.encode() + b">", 1)  # answered
                os.write(fd, answer.encode() + b"\n")
        else:
            os.kill(pid, 9)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


# --- 10.6: every command finds the data the server uses ---------------------------------


@pytest.mark.parametrize("data_dir", ["relative-data", None])
async def test_the_start_up_hint_is_the_exact_command_for_this_servers_data(
    tmp_path: Path, database_url: str | None, data_dir: str | None
) -> None:
    """`serve --data-dir D` or the default (and a database URL in the
    environment): the hint it logs, run as printed from another directory and
    shell, creates an account the server knows; so does `api-keys create`."""
    where, elsewhere = tmp_path / "server-cwd", tmp_path / "another-cwd"
    where.mkdir()
    elsewhere.mkdir()
    env = clean_env()
    if database_url:
        env["UJUMBE_DATABASE_URL"] = database_url
    port = free_port()
    given = ["--data-dir", data_dir] if data_dir else []
    async with serving(env, "--port", str(port), *given, cwd=where) as server:
        hint = await server.wait_for(r"create one with: (.+) accounts create --name NAME --email EMAIL --credits 100")
        prefix = shlex.split(hint.group(1))
        assert prefix[prefix.index("--data-dir") + 1] == str(where / (data_dir or "ujumbe-data"))
        if database_url:
            assert prefix[prefix.index("--database-url") + 1] == database_url
        (elsewhere / "pw").write_text("a long password\n")
        shell = clean_env()  # another shell: none of the server's environment
        account = ok(run(shell, *prefix[len(UJUMBE):], "accounts", "create", "--name", "Duka", "--email",
                         "ops@duka.co.ke", "--password-file", "pw", "--credits", "100", cwd=elsewhere))
        second = ok(run(shell, *prefix[len(UJUMBE):], "api-keys", "create", "ops", cwd=elsewhere))
        assert not (elsewhere / "ujumbe-data").exists()  # nothing went to a default data dir
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for key in (account["api_key"], second["api_key"]):
                r = await client.get("/v1/balance", headers={"authorization": f"Bearer {key}"})
                assert r.status_code == 200, r.text


def test_an_admin_command_on_an_empty_data_dir_says_it_made_a_new_database(tmp_path: Path) -> None:
    env = clean_env(UJUMBE_DATA_DIR=str(tmp_path / "data"))
    first = run(env, "accounts", "list")
    assert first.returncode == 0 and "no database in" in first.stderr and "--data-dir" in first.stderr
    again = run(env, "accounts", "list")
    assert again.returncode == 0 and "no database" not in again.stderr


# --- 10.7: an account by id, username or email ----------------------------------------------


def test_accounts_are_named_by_id_username_or_email_and_listed(tmp_path: Path) -> None:
    env = clean_env(UJUMBE_DATA_DIR=str(tmp_path / "data"), UJUMBE_ALLOW_PRIVATE_CALLBACKS="1")
    duka = ok(run(env, "accounts", "create", "--name", "Duka", "--email", "ops@duka.co.ke", "--username", "duka",
                  "--credits", "10", "--password", "-", stdin="a long password\n"))
    other = ok(run(env, "accounts", "create", "--name", "Other", "--email", "o@example.com", "--password", "-",
                   stdin="another password\n"))
    assert ok(run(env, "credits", "add", "duka", "5"))["balance"] == 15
    assert ok(run(env, "credits", "add", "OPS@duka.co.ke", "5"))["balance"] == 20
    assert ok(run(env, "credits", "add", duka["account_id"], "5"))["balance"] == 25
    assert ok(run(env, "callbacks", "set", "ops@duka.co.ke", "--dlr-url", "http://127.0.0.1:9/dlr"))["dlr_url"]
    assert ok(run(env, "senders", "add", "duka", "DUKA"))["account_id"] == duka["account_id"]
    assert ok(run(env, "numbers", "add", "duka", "22915"))["account_id"] == duka["account_id"]
    key = ok(run(env, "api-keys", "create", "duka", "--label", "billing"))
    assert key["account_id"] == duka["account_id"] and key["api_key"].startswith("uj_")

    listed = ok(run(env, "accounts", "list"))
    assert [(a["account_id"], a["username"], a["balance"]) for a in listed] == [
        (duka["account_id"], "duka", 25), (other["account_id"], "o", 0)]
    shown = ok(run(env, "accounts", "show", "duka"))
    assert shown["email"] == "ops@duka.co.ke" and shown["balance"] == 25
    assert shown["callbacks"]["dlr_url"] == "http://127.0.0.1:9/dlr"
    assert [k["label"] for k in shown["api_keys"]] == ["default", "billing"]
    assert shown["api_keys"][1]["prefix"] == key["api_key"][:8]
    assert shown["numbers"] == [{"number": "22915", "kind": "shortcode", "dialect": "native"}]
    assert "password_hash" not in shown and "key_seed" not in shown and duka["api_key"] not in str(shown)

    wrong = run(env, "credits", "add", "nobody", "5")
    assert wrong.returncode == 1
    assert "No account 'nobody'" in wrong.stderr and "ujumbe accounts list" in wrong.stderr


# --- 10.10: ports checked first; addresses and requests logged --------------------------------


@contextlib.contextmanager
def taken_port() -> Any:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_taken_http_port_stops_the_server_before_anything_else(tmp_path: Path, processes: str) -> None:
    data = tmp_path / "data"
    with taken_port() as port:
        out = run(clean_env(UJUMBE_DATA_DIR=str(data)), "serve", "--port", str(port), "--processes", processes,
                  timeout=30)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "HTTP" in lines[0] and "--port or UJUMBE_PORT" in lines[0]
    assert not data.exists()  # no secret made, no migration run


@pytest.mark.parametrize("args", [["--processes", "1"], ["--processes", "2"], ["--role", "worker"]])
def test_a_taken_smpp_port_stops_the_server_before_anything_else(tmp_path: Path, args: list[str]) -> None:
    data = tmp_path / "data"
    with taken_port() as smpp:
        out = run(clean_env(UJUMBE_DATA_DIR=str(data), UJUMBE_SMPP_PORT=str(smpp)), "serve", "--port",
                  str(free_port()), *args, timeout=30)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"127.0.0.1:{smpp}" in lines[0] and "SMPP" in lines[0] and "UJUMBE_SMPP_PORT" in lines[0]
    assert not data.exists()


async def test_addresses_and_each_request_are_logged_without_secrets(tmp_path: Path) -> None:
    smpp, port = free_port(), free_port()
    env = clean_env(UJUMBE_DATA_DIR=str(tmp_path / "data"), UJUMBE_SMPP_PORT=str(smpp))
    account = ok(run(env, "accounts", "create", "--name", "Duka", "--email", "ops@duka.co.ke",
                     "--password", "-", "--credits", "10", stdin="a long password\n"))
    key = account["api_key"]
    async with serving(env, "--port", str(port)) as server:
        await server.wait_for(rf"SMPP server listening on 127\.0\.0\.1:{smpp}")
        await server.wait_for(rf"HTTP listening on http://127\.0\.0\.1:{port}")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            r = await client.get("/sms/v3/getdlr", params={"api_key": key, "messageId": "1"})
            assert r.status_code == 200
            r = await client.post("/v1/messages", headers={"authorization": f"Bearer {key}"},
                                  json={"to": "0708400111", "text": "hello"})
            assert r.status_code == 202
            r = await client.get("/v1/nothing-here")
            assert r.status_code == 404
        await server.wait_for(r"ujumbe\.http: 127\.0\.0\.1 GET /sms/v3/getdlr 200 [\d.]+ms$")
        await server.wait_for(r"ujumbe\.http: 127\.0\.0\.1 POST /v1/messages 202 [\d.]+ms$")
        await server.wait_for(r"ujumbe\.http: 127\.0\.0\.1 GET /v1/nothing-here 404 [\d.]+ms$")
        log = "\n".join(server.lines)
        assert key not in log and key[:12] not in log and "api_key" not in log and "Bearer" not in log
        assert len([line for line in server.lines if "listening on" in line]) == 2  # each address once


# --- 11.10: X-Forwarded-For only from configured proxies -------------------------------------------


async def test_forwarded_for_from_an_untrusted_peer_does_not_change_the_client_address(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(UJUMBE_DATA_DIR=str(tmp_path / "data"))
    async with serving(env, "--port", str(port)) as server:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            statuses = []
            for i in range(25):  # another made-up address and login each time (20 per address allowed)
                r = await client.post("/v1/auth/token", headers={"x-forwarded-for": f"203.0.113.{i + 1}"},
                                      json={"username": f"guess{i}", "password": "wrong-password"})
                statuses.append(r.status_code)
                if r.status_code == 429:
                    break
        # the guesses all came from 127.0.0.1, and its failures are limited
        assert 429 in statuses, statuses
        await server.wait_for(r"ujumbe\.http: 127\.0\.0\.1 POST /v1/auth/token 401")
        assert not any("203.0.113." in line for line in server.lines)

    # behind a proxy the operator names, its X-Forwarded-For is the client
    env["UJUMBE_TRUSTED_PROXIES"] = "127.0.0.1"
    async with serving(env, "--port", str(port)) as server:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            r = await client.get("/health", headers={"x-forwarded-for": "203.0.113.77"})
            assert r.status_code == 200
        await server.wait_for(r"ujumbe\.http: 203\.0\.113\.77 GET /health 200")


# --- 11.11: owner-only files; secrets off the command line ---------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_data_dir_and_database_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = clean_env(UJUMBE_DATA_DIR=str(data))
    ok(run(env, "accounts", "create", "--name", "Duka", "--email", "ops@duka.co.ke", "--password", "-",
           stdin="a long password\n"))
    assert mode(data) == 0o700
    async with serving(env, "--port", str(free_port())):
        files = sorted(p.name for p in data.iterdir())
        for name in ("ujumbe.db", "ujumbe.db-wal", "ujumbe.db-shm", "ujumbe.lock", "secret.key"):
            assert name in files, files
        for path in data.iterdir():
            assert mode(path) == 0o600, (path.name, oct(mode(path)))

    # a database an older version left readable to all is narrowed on the next start
    os.chmod(data / "ujumbe.db", 0o644)
    ok(run(env, "accounts", "list"))
    assert mode(data / "ujumbe.db") == 0o600


async def _verify(data: Path, check: Any) -> Any:
    """Look at what the commands stored, through the real store of that data dir."""
    from ujumbe.config import Settings
    from ujumbe.runtime import Platform

    platform = Platform(Settings(data_dir=data, database_url=None, simulator=False))
    await platform.open()
    try:
        return await check(platform)
    finally:
        await platform.store.close()


async def test_passwords_come_from_a_prompt_stdin_or_a_file_and_the_flag_warns(tmp_path: Path) -> None:
    from ujumbe.services import smpp_credentials
    from ujumbe.store import routing as routing_q

    data = tmp_path / "data"
    env = clean_env(UJUMBE_DATA_DIR=str(data))
    (tmp_path / "pw").write_text("password in a file\n")

    # on a terminal: asked twice, never echoed into the output
    code, output = await asyncio.to_thread(
        on_terminal, env, ["accounts", "create", "--name", "A", "--email", "a@example.com"],
        [("password for the account:", "typed at the prompt"),
         ("password for the account (again):", "typed at the prompt")])
    assert code == 0, output
    assert "typed at the prompt" not in output and '"api_key"' in output
    piped = run(env, "accounts", "create", "--name", "B", "--email", "b@example.com", "--password", "-",
                stdin="piped on stdin\n")
    filed = run(env, "accounts", "create", "--name", "C", "--email", "c@example.com", "--password-file",
                str(tmp_path / "pw"))
    flagged = run(env, "accounts", "create", "--name", "D", "--email", "d@example.com", "--password",
                  "given as a flag")
    for out in (piped, filed):
        ok(out)
        assert "warning" not in out.stderr
    ok(flagged)
    assert "warning: --password on the command line" in flagged.stderr and "--password-file" in flagged.stderr
    none = run(env, "accounts", "create", "--name", "E", "--email", "e@example.com")  # no terminal, no password
    assert none.returncode == 2 and "--password-file" in none.stderr
    missing = run(env, "accounts", "create", "--name", "E", "--email", "e@example.com", "--password-file",
                  str(tmp_path / "absent"))
    assert missing.returncode == 2 and "cannot read --password-file" in missing.stderr

    # SMPP customers' and operators' passwords, and a premium service's token
    code, output = await asyncio.to_thread(
        on_terminal, env, ["smpp", "credentials", "a@example.com", "--system-id", "duka_a"],
        [("SMPP password (at most 8 characters):", "smpp-tty"),
         ("SMPP password (at most 8 characters) (again):", "smpp-tty")])
    assert code == 0, output
    ok(run(env, "smpp", "credentials", "b@example.com", "--system-id", "duka_b", "--password", "-",
           stdin="smpp-in\n"))
    (tmp_path / "smpp").write_text("smpp-f\n")
    ok(run(env, "smpp", "credentials", "c@example.com", "--system-id", "duka_c", "--password-file",
           str(tmp_path / "smpp")))
    smpp_flag = run(env, "smpp", "credentials", "d@example.com", "--system-id", "duka_d", "--password", "smpp-fl")
    ok(smpp_flag)
    assert "warning: --password on the command line" in smpp_flag.stderr
    ok(run(env, "connectors", "add", "op1", "--host", "127.0.0.1", "--port", "2775", "--system-id", "u",
           "--password-file", str(tmp_path / "smpp")))
    connector_flag = run(env, "connectors", "add", "op2", "--host", "127.0.0.1", "--port", "2775", "--system-id",
                         "u", "--password", "op-flag")
    ok(connector_flag)
    assert "warning: --password on the command line" in connector_flag.stderr
    (tmp_path / "token").write_text("token-from-file\n")
    service = ok(run(env, "services", "add", "a@example.com", "--shortcode", "22915", "--type", "on-demand",
                     "--keywords", "GAME", "--api-token-file", str(tmp_path / "token")))
    assert service["api_token_set"] is True

    async def check(platform: Any) -> None:
        for login, password in (("a@example.com", "typed at the prompt"), ("b@example.com", "piped on stdin"),
                                ("c@example.com", "password in a file"), ("d@example.com", "given as a flag")):
            await platform.accounts.verify_password(login, password)
        for system_id, password in (("duka_a", "smpp-tty"), ("duka_b", "smpp-in"), ("duka_c", "smpp-f"),
                                    ("duka_d", "smpp-fl")):
            assert await smpp_credentials.verify(platform.store, system_id, password), system_id
        for name, password in (("op1", "smpp-f"), ("op2", "op-flag")):
            row = await platform.store.read(lambda tx, n=name: routing_q.get_connector(tx, n))
            assert platform.routing.box.open(row["password_enc"]) == password

    await _verify(data, check)


def test_a_database_that_cannot_be_reached_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    env = clean_env(UJUMBE_DATABASE_URL=f"postgresql://ujumbe:pw-not-shown@127.0.0.1:{closed}/ujumbe",
                    UJUMBE_SECRET_KEY="s", UJUMBE_DATA_DIR=str(tmp_path))
    for args in (["serve", "--port", str(free_port())], ["serve", "--role", "worker"],
                 ["serve", "--processes", "2", "--port", str(free_port())], ["accounts", "list"]):
        out = run(env, *args)
        assert out.returncode == 1, (args, out.stderr)
        assert f"cannot open the database at 127.0.0.1:{closed}/ujumbe" in out.stderr, out.stderr
        assert "check UJUMBE_DATABASE_URL" in out.stderr
        assert "Traceback" not in out.stderr and "pw-not-shown" not in out.stderr


def test_a_password_in_the_database_urls_query_is_not_shown_either(tmp_path: Path) -> None:
    # libpq URLs may carry the password as ?password=, with no user info at all
    closed = free_port()
    env = clean_env(UJUMBE_DATABASE_URL=f"postgresql://127.0.0.1:{closed}/ujumbe?password=pw-not-shown",
                    UJUMBE_SECRET_KEY="s", UJUMBE_DATA_DIR=str(tmp_path))
    out = run(env, "accounts", "list")
    assert out.returncode == 1 and f"cannot open the database at 127.0.0.1:{closed}/ujumbe" in out.stderr, out.stderr
    assert "pw-not-shown" not in out.stderr
