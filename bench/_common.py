"""Shared plumbing for the benchmarks: processes, databases, accounts, wrk.

Every benchmark runs the system under test in its own process(es) and the
load generator in another, so the figures are what a client would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PY = sys.executable
UJUMBE = [PY, "-m", "ujumbe"]
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
SECRET = "bench-secret-key-not-for-production-use-0123456789"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_wrk() -> str:
    """wrk drives the HTTP load: C, one thread, far faster than any Python client."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing; installing it with apt-get (Debian package 'wrk')", flush=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, stdout=subprocess.DEVNULL)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update"], check=False, stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit("wrk is needed to generate HTTP load: install it (Debian/Ubuntu: sudo apt-get install -y wrk)")


# --- databases ---


@dataclass
class Database:
    """Where Ujumbe keeps its data for one run: a fresh SQLite dir or a throwaway PG database."""

    env: dict[str, str]
    data_dir: Path
    url: str | None  # PostgreSQL URL, None for SQLite
    admin_url: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return "postgres" if self.url else "sqlite"


@contextlib.contextmanager
def database(pg: str | None) -> Iterator[Database]:
    tmp = Path(tempfile.mkdtemp(prefix="ujumbe-bench-"))
    env = dict(os.environ, UJUMBE_SECRET_KEY=SECRET, UJUMBE_DATA_DIR=str(tmp), UJUMBE_LOG_LEVEL="WARNING",
               PYTHONPATH=str(ROOT), UJUMBE_SMPP_PORT="off")
    env.pop("UJUMBE_DATABASE_URL", None)
    db = Database(env, tmp, None)
    if pg:
        import asyncpg

        name = f"ujumbe_bench_{uuid.uuid4().hex[:10]}"

        async def create() -> None:
            conn = await asyncpg.connect(pg)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        base, _, _ = pg.rpartition("/")
        db = Database(dict(env, UJUMBE_DATABASE_URL=f"{base}/{name}"), tmp, f"{base}/{name}", pg, name)
    try:
        yield db
    finally:
        if db.name and db.admin_url:
            import asyncpg

            async def drop() -> None:
                conn = await asyncpg.connect(db.admin_url)
                try:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
                finally:
                    await conn.close()

            with contextlib.suppress(Exception):
                asyncio.run(drop())
        shutil.rmtree(tmp, ignore_errors=True)


async def backend_pids(url: str) -> list[int]:
    """PostgreSQL backends serving this database (the workers' pools)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [r[0] for r in rows]
    finally:
        await conn.close()


def cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def pg_backend_cpu(url: str, seen: dict[int, float] | None = None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving ``url``'s database now;
    pass the last answer back in so backends that have since ended keep
    their last reading."""
    out = dict(seen or {})
    for pid in asyncio.run(backend_pids(url)):
        out[pid] = cpu_of(pid)
    return out


def create_account(db: Database, credits: str = "1000000000", **extra: str) -> dict[str, Any]:
    """A funded account made with the ``ujumbe`` command, as an operator would."""
    cmd = [*UJUMBE, "accounts", "create", "--name", "Bench", "--email", f"bench-{uuid.uuid4().hex[:6]}@example.com",
           "--password", "bench password 123", "--credits", credits]
    out = subprocess.run(cmd, env=db.env, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    account: dict[str, Any] = json.loads(out)
    for flag, value in extra.items():
        subprocess.run([*UJUMBE, *flag.split(), account["account_id"], value], env=db.env, cwd=ROOT, check=True,
                       capture_output=True)
    return account


# --- processes ---


class Proc:
    """A child process we started; stopped by its own pid, never by name."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None, *, stdout: Any = subprocess.DEVNULL,
                 log: Path | None = None, cgroup_procs: str | None = None) -> None:
        self.log = log
        err: Any = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        # in its cgroup (a CPU quota) before it runs a line of its own
        enter = None if cgroup_procs is None else lambda: Path(cgroup_procs).write_text(str(os.getpid()))
        self.p = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=stdout, stderr=err, start_new_session=True,
                                  preexec_fn=enter)
        self.pid = self.p.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def peak_rss_mb(self) -> float:
        """VmHWM: the highest resident set size the process has had so far."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def cpu_seconds(self, children: bool = False) -> float:
        """CPU time so far; with ``children``, plus that of its live child
        processes (``serve --processes N`` forks its API processes)."""
        pids = [self.pid, *(_children_of(self.pid) if children else [])]
        try:
            total = 0
            for pid in pids:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            return total / os.sysconf("SC_CLK_TCK")
        except OSError:
            return float("nan")


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def wait_http(port: int, path: str = "/health", timeout: float = 30.0, proc: Proc | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.p.poll() is not None:
            tail = proc.log.read_text()[-3000:] if proc.log and proc.log.exists() else ""
            raise SystemExit(f"server exited with {proc.p.returncode}\n{tail}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"nothing answered on port {port} within {timeout} s")


def serve_ujumbe(db: Database, role: str, port: int, extra_env: dict[str, str] | None = None) -> Proc:
    env = dict(db.env, **(extra_env or {}))
    log = db.data_dir / f"serve-{role}-{port}.log"
    proc = Proc([*UJUMBE, "serve", "--role", role, "--port", str(port)], env, log=log)
    wait_http(port, proc=proc)
    return proc


def serve_trivial(port: int) -> Proc:
    log = Path(tempfile.gettempdir()) / f"ujumbe-bench-trivial-{port}.log"
    proc = Proc([PY, str(BENCH / "_trivial.py"), "--port", str(port)], log=log)
    wait_http(port, "/", proc=proc)
    return proc


def trivial_cpu_us(seconds: float, connections: int) -> tuple[float, "WrkResult"]:
    """The trivial handler's CPU per request under wrk, and its run: the unit
    the other figures are read in on a machine whose speed varies."""
    port = free_port()
    trivial = serve_trivial(port)
    try:
        wrk(port, "x", 2, connections, path="/")  # warm-up
        cpu0 = trivial.cpu_seconds()
        r = wrk(port, "x", seconds, connections, path="/")
        return (trivial.cpu_seconds() - cpu0) / max(r.requests, 1) * 1e6, r
    finally:
        trivial.stop()


# --- wrk ---

_LUA = r"""
local n = %(start)d
local run = "%(run)s"
local keys = {%(keys)s}
local senders = {%(senders)s}
local key, sender = keys[1], senders[1]
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
local text = "Your order 1234 is on its way. Track it at duka.co.ke/t/1234"
%(prelude)s
request = function()
  n = n + 1
  if #keys > 1 then  -- several accounts (accept.py --accounts): each request another's key in turn
    key, sender = keys[n %% #keys + 1], senders[n %% #keys + 1]
    headers["Authorization"] = "Bearer " .. key
  end
  -- valid Safaricom numbers, 18 million distinct, whose last two digits are
  -- 10-99: never one of the simulators' failure endings (...0001-0007)
  local to = string.format("2547%%02d%%04d%%02d", 10 + math.floor(n / 10000) %% 20, n %% 10000,
    10 + math.floor(n / 200000) %% 90)
  return wrk.format("%(method)s", %(path)s, headers, %(body)s)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%%d,"duration_us":%%d,"non2xx":%%d,"errors":%%d,' ..
    '"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non2xx: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return (self.requests - self.non2xx - self.errors) / self.seconds


# The body of each request, a Lua expression over ``to`` (the recipient),
# ``n`` (the request's number), ``run`` (a token of this run), ``key`` (the API
# key), ``sender`` (its account's sender name) and ``text``.
BODIES = {
    "native": """'{"to":"' .. to .. '","sender":"' .. sender .. '","text":"' .. text .. '"}'""",
    "tingg": """'{"notificationType":"bench","referenceID":"' .. run .. n .. '",'
      .. '"smsDto":{"msisdn":["' .. to .. '"],"message":"' .. text .. '"}}'""",
    "tilil": """'{"api_key":"' .. key .. '","mobile":"' .. to .. '","sender_name":"' .. sender .. '","message":"' .. text .. '"}'""",
    "tingting": """'{"number":"' .. to .. '","message":"Your ' .. sender .. ' code is {otp}","sms_send_options":"text"}'""",
}

# Messangi signs every call (HMAC-SHA256 over its path segments, the recipient
# among them), which wrk's Lua cannot: the paths are made here beforehand, one
# per request, recipients numbered as the Lua script numbers them.
MESSANGI_TEXT = "Your order 1234 is on its way. Track it at duka.co.ke/t/1234"


def recipient(n: int) -> str:
    """The Lua script's ``to`` for request number ``n``."""
    return f"2547{10 + n // 10000 % 20:02d}{n % 10000:04d}{10 + n // 200000 % 90:02d}"


def messangi_paths(account: dict[str, Any], start: int, count: int, sender: str = "DUKA") -> list[str]:
    """sendMT calls (instanceId/from/carrier/to/text, then publicKey and the
    signature), as the dialect's tests sign them."""
    import base64
    import hashlib
    import hmac

    key = account["private_key"].encode()
    text = base64.urlsafe_b64encode(MESSANGI_TEXT.encode()).decode().rstrip("=")
    head = f"{account['instance_id']}/{sender}/null/"
    out = []
    for n in range(start + 1, start + count + 1):
        signed = f"{head}{recipient(n)}/{text}"
        sig = hmac.new(key, signed.encode(), hashlib.sha256).hexdigest()
        out.append(f"/messangi_mmc/rest/api/sendMT/{signed}/{account['public_key']}/{sig}")
    return out


def wrk(port: int, key: str | list[str], seconds: float, connections: int, *, path: str = "/v1/messages",
        threads: int = 1, body: str = "native", senders: list[str] | None = None,
        account: dict[str, Any] | None = None) -> WrkResult:
    """``key``: an API key, or several (one per account, ``senders`` their
    sender names; default DUKA) taken in turn, request by request.
    ``account``: Messangi's signing keys (its paths are signed here)."""
    script = Path(tempfile.gettempdir()) / f"ujumbe-bench-{os.getpid()}.lua"
    keys = [key] if isinstance(key, str) else key
    senders = senders or ["DUKA"] * len(keys)
    # each run starts at a random place, so numbers are new to the server's caches
    start = random.randrange(18_000_000)
    fields = {"keys": ", ".join(json.dumps(k) for k in keys), "senders": ", ".join(json.dumps(s) for s in senders),
              "path": json.dumps(path), "start": start, "body": BODIES.get(body, "nil"),
              "run": uuid.uuid4().hex[:12], "method": "POST", "prelude": ""}
    if body == "messangi":
        assert account is not None, "Messangi's paths are signed with the account's keys"
        listing = script.with_suffix(".paths")
        # more than any run can send (a repeat would find its number in the cache)
        listing.write_text("\n".join(messangi_paths(account, start, int(seconds * 12_000) + 1000)) + "\n")
        fields.update(method="GET", path="paths[(n - start - 1) % #paths + 1]", prelude=(
            f"local start = {start}\nlocal paths = {{}}\n"
            f"for line in io.lines({json.dumps(str(listing))}) do paths[#paths + 1] = line end"))
    script.write_text(_LUA % fields)
    cmd = [need_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
           "-s", str(script), f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    d = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(d["requests"], d["duration_us"] / 1e6, d["non2xx"], d["errors"], d["p50_us"] / 1000,
                     d["p90_us"] / 1000, d["p99_us"] / 1000, d["max_us"] / 1000)


def py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample the server while it is loaded (py-spy from PyPI); None when it is not installed."""
    exe = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(exe).exists():
        print("(py-spy not installed: `.venv/bin/pip install py-spy` for --profile)")
        return None
    return subprocess.Popen([exe, "record", "-p", str(pid), "-d", str(int(seconds)), "-f", "raw", "-o", str(out),
                             "--rate", "250", "--threads", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_of_profile(raw: Path, n: int = 25) -> str:
    """Own and total time per function from a py-spy raw (collapsed stacks) file,
    over every thread (the event loop, and the SQLite writer thread)."""
    if not raw.exists():
        return "(no profile)"
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    threads: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        samples += c
        frames = stack.split(";")
        if frames and frames[0].startswith("thread "):
            name = frames.pop(0).split(":", 1)[-1].strip() or "?"
            threads[name] = threads.get(name, 0) + c
        if not frames:
            continue
        leaf = frames[-1]
        own[leaf] = own.get(leaf, 0) + c
        for f in set(frames):
            total[f] = total.get(f, 0) + c
    if not samples:
        return "(no samples)"
    shares = ", ".join(f"{k} {100 * v / samples:.0f}%" for k, v in sorted(threads.items(), key=lambda kv: -kv[1]))
    lines = [f"{samples} samples ({shares}); by own time:", "  own%  total%  function (file:line)"]
    for f, c in sorted(own.items(), key=lambda kv: -kv[1])[:n]:
        lines.append(f"{100 * c / samples:6.1f} {100 * total[f] / samples:6.1f}  {f}")
    lines.append("by total time, Ujumbe's own functions:")
    ours = [(f, c) for f, c in total.items() if "ujumbe/" in f and "cli.py" not in f and "__main__" not in f]
    for f, c in sorted(ours, key=lambda kv: -kv[1])[:n]:
        lines.append(f"{'':6} {100 * c / samples:6.1f}  {f}")
    return "\n".join(lines)


def today() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def add_connector(db: Database, name: str, port: int, *, binds: int = 1, window: int = 64,
                  host: str = "127.0.0.1") -> None:
    """An SMPP connector provisioned in the database with the ``ujumbe`` command,
    as an operator does (docs/smpp-connectors.md); workers bind it at start."""
    subprocess.run([*UJUMBE, "connectors", "add", name, "--host", host, "--port", str(port), "--system-id", "bench",
                    "--password", "bench", "--binds", str(binds), "--window", str(window)],
                   env=db.env, cwd=ROOT, check=True, capture_output=True)


def serve_worker(db: Database, extra_env: dict[str, str] | None = None, tag: str = "",
                 cgroup_procs: str | None = None) -> Proc:
    """``ujumbe serve --role worker``: dispatch, receipts and callbacks, no HTTP;
    with ``cgroup_procs``, started inside that cgroup (bench/_cpuquota.py)."""
    env = dict(db.env, **(extra_env or {}))
    return Proc([*UJUMBE, "serve", "--role", "worker", "--port", str(free_port())], env,
                log=db.data_dir / f"serve-worker{tag}.log", cgroup_procs=cgroup_procs)
