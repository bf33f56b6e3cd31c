"""The ``ujumbe`` command: serve, migrate, and administer accounts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ujumbe.config import SMPP_DEFAULT_PORT, Settings, smpp_port_from_env
from ujumbe.core.errors import Invalid, UjumbeError
from ujumbe.core.pricing import display
from ujumbe.store.postgres import StoreUnreachable


def _settings(args: argparse.Namespace) -> Settings:
    """One rule for every command, the server's included: --data-dir, else
    UJUMBE_DATA_DIR, else ./ujumbe-data; --database-url, else UJUMBE_DATABASE_URL."""
    settings = Settings()
    if getattr(args, "data_dir", None):
        settings.data_dir = Path(args.data_dir)
    if getattr(args, "database_url", None):
        settings.database_url = args.database_url
    return settings


def _store_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """--data-dir and --database-url, before or after the subcommand."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--data-dir", default=default, metavar="DIR",
                        help="where the embedded database and the server secret live "
                             "(default: UJUMBE_DATA_DIR, else ./ujumbe-data)")
    parser.add_argument("--database-url", default=default, metavar="URL",
                        help="postgresql://... (default: UJUMBE_DATABASE_URL, else the embedded database)")


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def _secret(args: argparse.Namespace, name: str, *, prompt: str | None = None, env: str | None = None,
            stdin_fallback: bool = False) -> str | None:
    """A secret option ``--NAME``: from ``--NAME-file F``, ``--NAME -``
    (stdin), ``--NAME VALUE`` (with a warning: the command line is in the
    shell's history and every user's process list), ``env``, or asked for
    with ``prompt`` on a terminal. None when none of them gives one."""
    flag = "--" + name.replace("_", "-")
    value, path = getattr(args, name, None), getattr(args, name + "_file", None)
    if value is not None and path is not None:
        raise Invalid(f"give {flag} or {flag}-file, not both", code="usage")
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise Invalid(f"cannot read {flag}-file {path}: {exc.strerror or exc}", code="usage") from None
        return text.rstrip("\r\n")
    if value == "-":
        return sys.stdin.read().rstrip("\r\n")
    if value is not None:
        _warn(f"{flag} on the command line is kept in your shell history and visible to other users "
              f"while this runs; leave it out to be asked, or use {flag}-file FILE or {flag} - (stdin)")
        return str(value)
    if env and os.environ.get(env):
        return os.environ[env]
    if prompt and sys.stdin.isatty():
        import getpass

        while True:
            first = getpass.getpass(f"{prompt}: ")
            if getpass.getpass(f"{prompt} (again): ") == first:
                return first
            print("they differ; once more", file=sys.stderr)
    if stdin_fallback and not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n") or None
    return None


def _needed(value: str | None, name: str) -> str:
    if value is None:
        flag = "--" + name.replace("_", "-")
        raise Invalid(f"{flag} is needed: run on a terminal to be asked, or give {flag}-file FILE "
                      f"or {flag} - (read from stdin)", code="usage")
    return value


def _secret_options(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    flag = "--" + name.replace("_", "-")
    parser.add_argument(flag, metavar="VALUE", help=f"{help}; '-' reads it from stdin")
    parser.add_argument(f"{flag}-file", metavar="FILE", help=f"read {flag} from FILE")


def _with_platform(fn: Callable[[Any, argparse.Namespace], Awaitable[Any]]) -> Callable[[argparse.Namespace], int]:
    """Run an admin command against the store, without starting workers."""

    def command(args: argparse.Namespace) -> int:
        from ujumbe.runtime import Platform

        settings = _settings(args)
        settings.simulator = False
        database = settings.data_dir / "ujumbe.db"
        fresh = not settings.database_url and not database.exists()

        async def main() -> Any:
            platform = Platform(settings)
            await platform.open()
            try:
                if getattr(args, "account", None):  # an id, username or email, wherever ACCOUNT is taken
                    args.account = (await platform.accounts.resolve(args.account)).id
                return await fn(platform, args)
            finally:
                await platform.store.close()

        try:
            result = asyncio.run(main())
        except UjumbeError as exc:
            print(json.dumps({"error": {"code": exc.code, "message": exc.message}}), file=sys.stderr)
            return 2 if exc.code == "usage" else 1
        except StoreUnreachable as exc:
            print(json.dumps({"error": {"code": "database_unavailable", "message": str(exc)}}), file=sys.stderr)
            return 1
        if fresh and args.command != "migrate":
            # The usual cause: the server runs with another --data-dir.
            print(f"note: there was no database in {settings.data_dir.resolve()}; this made a new one. A server "
                  "started with --data-dir or UJUMBE_DATA_DIR needs the same here.", file=sys.stderr)
        if result is not None:
            print(json.dumps(_iso_times(result), indent=2, default=str))
        return 0

    return command


def _iso_times(value: Any) -> Any:
    """Times (``…_at`` fields, epoch ms in the store) as ISO 8601, as the APIs show them."""
    from ujumbe.core.timefmt import iso

    if isinstance(value, list):
        return [_iso_times(v) for v in value]
    if isinstance(value, dict):
        return {k: iso(v) if k.endswith("_at") and isinstance(v, int) and not isinstance(v, bool) else _iso_times(v)
                for k, v in value.items()}
    return value


def admin_command(parser: argparse.ArgumentParser, fn: Callable[[Any, argparse.Namespace], Awaitable[Any]]) -> argparse.ArgumentParser:
    """An admin subcommand: it takes --data-dir/--database-url and runs ``fn`` against the store."""
    _store_options(parser)
    parser.set_defaults(func=_with_platform(fn))
    return parser


def serve(args: argparse.Namespace) -> int:
    if args.processes > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before prometheus_client is imported (by the app, just below): every
        # process then writes its metrics to files there, which /metrics adds up.
        import atexit
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="ujumbe-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        parent = os.getpid()
        atexit.register(lambda: os.getpid() == parent and shutil.rmtree(folder, ignore_errors=True))
    from ujumbe.http.app import create_app
    from ujumbe.runtime import Platform

    if args.processes < 1:
        print("--processes must be 1 or more", file=sys.stderr)
        return 2
    settings = _settings(args)
    settings.host, settings.port, settings.role = args.host, args.port, args.role
    if args.metrics_listen is not None:
        settings.metrics_listen = args.metrics_listen.strip()
    if args.smtp:
        settings.smtp_url = os.environ["UJUMBE_SMTP_URL"] = args.smtp  # the environment: for --processes children too
    try:
        settings.smpp_port = smpp_port_from_env(SMPP_DEFAULT_PORT)  # serve listens for SMPP customers by default
    except ValueError:
        print("ujumbe: UJUMBE_SMPP_PORT must be a port number, or off", file=sys.stderr)
        return 2
    # The ports first, before the secret, the lock or any migration: a port
    # in use is a one-line refusal naming what changes it, not a half start.
    http_sock, problems = None, []
    if args.role != "worker":
        try:
            http_sock = _bind(settings.host, settings.port)
        except OSError as exc:
            problems.append(f"cannot listen for HTTP on {settings.host}:{settings.port}: {exc.strerror or exc}; "
                            "--port or UJUMBE_PORT changes the port")
    if args.role in ("worker", "all") and settings.smpp_port:
        try:
            _bind(settings.smpp_host, settings.smpp_port).close()  # asyncio binds it again the same way
        except OSError as exc:
            problems.append(f"cannot listen for SMPP on {settings.smpp_host}:{settings.smpp_port}: "
                            f"{exc.strerror or exc}; UJUMBE_SMPP_PORT changes the port (off: no SMPP server)")
    metrics_sock = None
    if settings.metrics_listen and not problems:
        from ujumbe.http.metrics import parse_listen

        try:
            metrics_host, metrics_port = parse_listen(settings.metrics_listen)
        except ValueError as exc:
            print(f"ujumbe: {exc}", file=sys.stderr)
            return 2
        if metrics_port == settings.port and args.role != "worker":
            print(f"ujumbe: the metrics listen address {settings.metrics_listen} takes the API's port; give it a port "
                  "of its own (--metrics-listen or UJUMBE_METRICS_LISTEN)", file=sys.stderr)
            return 2
        try:
            metrics_sock = _bind(metrics_host, metrics_port)
        except OSError as exc:
            problems.append(f"cannot listen for metrics on {settings.metrics_listen}: {exc.strerror or exc}; "
                            "--metrics-listen or UJUMBE_METRICS_LISTEN changes it")
    if problems:
        for problem in problems:
            print(f"ujumbe: {problem}", file=sys.stderr)
        return 1
    from ujumbe import logs

    logs.configure()  # UJUMBE_LOG_LEVEL, UJUMBE_LOG_FORMAT (plain | json)
    platform = Platform(settings)
    where = settings.database_url.split("@")[-1] if settings.database_url else str(settings.data_dir / "ujumbe.db")
    logging.getLogger("ujumbe").info("starting role=%s store=%s", args.role, where)
    if args.role != "worker":
        logging.getLogger("ujumbe").info("dashboard on http://%s:%s/dashboard (API docs at /docs)",
                                         settings.host, settings.port)
    if metrics_sock is not None:
        logging.getLogger("ujumbe").info("metrics on http://%s/metrics (no token; /healthz and /readyz too)",
                                         settings.metrics_listen)
    extra = [metrics_sock] if metrics_sock is not None else []
    _tune_gc()  # before any fork: every process of serve inherits it
    if args.role == "worker":
        return run_worker(platform, metrics_sock=metrics_sock)
    assert http_sock is not None
    if args.processes > 1:
        return serve_processes(platform, args.processes, http_sock, extra)
    if settings.database_url:
        # a database that cannot be reached: one line saying so, not the
        # traceback uvicorn would print for the failed start
        problem = _unreachable(settings)
        if problem:
            logging.getLogger("ujumbe").error("%s", problem)
            return 1
    server = _http_server(create_app(platform, role=args.role), settings, announce=True)
    server.run(sockets=[http_sock, *extra])
    return 0 if server.started else 1  # not started: the start-up failure is logged above


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections in a long-running server. With
    CPython's default threshold (a collection per 700 net new objects) a send
    on /v1 spent ~22 % of its CPU (~55 of ~260 us) in the collector, most in
    full collections walking every object loaded at start, each a 45-57 ms
    pause (bench/RESULTS.md, "Issue 18: profiles").
    Objects alive now are set aside (``gc.freeze``: never walked again; they
    live as long as the process anyway), and the youngest generation is
    collected per 10,000 new objects: garbage cycles wait a little longer,
    nothing else changes."""
    import gc

    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _unreachable(settings: Settings) -> str | None:
    """Why the database of ``settings`` cannot be opened, or None."""
    from ujumbe.store import create_store

    async def check() -> None:
        store = create_store(settings.database_url, settings.data_dir)
        await store.open()
        await store.close()

    try:
        asyncio.run(check())
    except StoreUnreachable as exc:
        return str(exc)
    return None


def _bind(host: str, port: int) -> Any:
    """A TCP socket bound to host:port (not yet listening), as uvicorn and
    asyncio bind theirs; OSError when the address is taken."""
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _http_address(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


def _http_server(app: Any, settings: Settings, *, announce: bool) -> Any:
    """A uvicorn server for ``app`` that logs its address once it listens."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if announce and self.started:
                logging.getLogger("ujumbe").info("HTTP listening on %s", _http_address(settings))

    return Server(_uvicorn_config(app, settings))


def _uvicorn_config(app: Any, settings: Settings) -> Any:
    import uvicorn

    # Forwarded headers only from UJUMBE_TRUSTED_PROXIES (uvicorn would trust
    # 127.0.0.1's): otherwise any local process could pose as any client.
    # The access log is ujumbe.http.app's own, which leaves out query strings.
    # log_config=None: uvicorn's own lines go through ours (ujumbe.logs), JSON too.
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                          log_config=None,
                          loop="auto", http="auto", proxy_headers=bool(settings.trusted_proxies),
                          forwarded_allow_ips=settings.trusted_proxies or None)


def _metrics_server(platform: Any) -> Any:
    """A uvicorn server for the metrics address of a worker process: the
    platform is run by run_worker (no lifespan), and so are the signals."""
    import uvicorn

    from ujumbe.http.metrics import listener_app

    class Server(uvicorn.Server):
        def capture_signals(self) -> Any:
            return contextlib.nullcontext()

    config = _uvicorn_config(listener_app(platform), platform.settings)
    config.lifespan = "off"
    return Server(config)


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this process when its parent dies (even by SIGKILL),
    so no orphan keeps serving, or holding the embedded database's lock."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before that took effect
        os.kill(os.getpid(), signal.SIGTERM)


def serve_processes(platform: Any, n: int, sock: Any, extra: list[Any] | None = None) -> int:
    """``serve --processes N``: N processes answer the API on one port, each
    with its own event loop, so the API uses more than one core.

    The parent binds the socket and forks the children, which inherit it; the
    kernel hands each new connection to whichever child accepts first, so a
    busy child takes fewer. The parent applies the migrations first (children
    racing to do so would collide) and holds the embedded database's lock for
    them. With ``--role all`` the last child runs the workers and no HTTP: a
    message costs the workers more CPU than its accept, and sharing an event
    loop slows both (bench/accept.py: role all vs api+worker). A child that
    dies is started again. The API processes also share the metrics listen
    address (``extra``); their /readyz then checks that the workers' process
    beats (``Settings.ready_workers``).
    """
    import signal
    import time

    from ujumbe.http.app import create_app
    from ujumbe.runtime import Platform

    settings = platform.settings
    role = settings.role

    async def prepare() -> None:
        await platform.open()
        await platform.log_first_steps()
        await platform.store.close()

    try:
        asyncio.run(prepare())
    except StoreUnreachable as exc:
        logging.getLogger("ujumbe").error("%s", exc)
        return 1
    if platform.store.dialect == "sqlite":
        platform.lock_data_dir(role)
    settings.parent_holds_lock = True
    if role == "all":
        settings.ready_workers = max(settings.ready_workers, 1)  # the last child's
    extra = extra or []
    sock.listen(2048)  # connections wait in the kernel's queue until a process takes them
    for s in extra:
        s.listen(128)
    log = logging.getLogger("ujumbe")

    parent = os.getpid()

    def child(index: int) -> int:
        pid = os.fork()
        if pid:
            return pid
        code = 0
        try:
            _die_with_parent(parent)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if role == "all" and index == n - 1:
                for s in (sock, *extra):
                    s.close()
                code = run_worker(Platform(settings), "all")  # "all": it owns the leases, see Platform.start_workers
            else:
                app = create_app(Platform(settings), role="api")
                _http_server(app, settings, announce=False).run(sockets=[sock, *extra])
        except KeyboardInterrupt:
            pass
        except BaseException:
            log.exception("process %d failed", index)
            code = 1
        finally:
            os._exit(code)

    children = {child(i): i for i in range(n)}
    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    log.info("HTTP listening on %s (role=%s, %d processes)", _http_address(settings), role, n)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, None)
        if index is None or stopping:
            continue
        log.error("process %d (pid %d) exited with status %d; starting it again in 1 s", index, pid, status)
        time.sleep(1)
        if not stopping:
            children[child(index)] = index
    return 0


def run_worker(platform: Any, role: str = "worker", *, metrics_sock: Any = None) -> int:
    """Run ``platform``'s workers (no API) until SIGINT or SIGTERM; ``role``
    ``all`` when this process also owns the embedded database (its leases).
    With ``metrics_sock``, /metrics, /healthz and /readyz answer there."""
    import signal

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await platform.start(role)
        except RuntimeError as exc:  # the SMPP port taken since serve checked it, the database's lock
            logging.getLogger("ujumbe").error("%s", exc)
            with contextlib.suppress(Exception):  # whatever had started
                await platform.stop()
            return 1
        metrics_server = None
        if metrics_sock is not None:
            metrics_server = _metrics_server(platform)
            serving = asyncio.create_task(metrics_server.serve(sockets=[metrics_sock]))
        await stop.wait()
        if metrics_server is not None:
            metrics_server.should_exit = True
            await serving
        await platform.stop()
        return 0

    try:
        import uvloop  # installed with uvicorn[standard]; the same loop as the API's
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


async def _migrate(platform: Any, args: argparse.Namespace) -> Any:
    return {"migrations": "up to date"}


async def _create_account(platform: Any, args: argparse.Namespace) -> Any:
    password = _needed(_secret(args, "password", prompt="password for the account"), "password")
    return await platform.accounts.create(
        name=args.name, email=args.email, password=password, username=args.username,
        region=args.region, credits=args.credits,
    )


def _account_json(row: dict[str, Any]) -> dict[str, Any]:
    from ujumbe.dialects.native import iso

    out = {"account_id": row["id"], **{k: row[k] for k in ("name", "username", "email", "region")},
           "balance": display(row["balance"]), "active": bool(row["active"]), "created_at": iso(row["created_at"])}
    if "api_keys" in row:
        out["callbacks"] = {k: row[k] for k in ("dlr_url", "inbound_url", "subscription_url")}
        out["api_keys"] = [{"prefix": k["prefix"], "label": k["label"], "created_at": iso(k["created_at"]),
                            "revoked_at": iso(k["revoked_at"])} for k in row["api_keys"]]
        out["numbers"] = row["numbers"]
    return out


async def _list_accounts(platform: Any, args: argparse.Namespace) -> Any:
    return [_account_json(row) for row in await platform.accounts.list_all()]


async def _show_account(platform: Any, args: argparse.Namespace) -> Any:
    return _account_json(await platform.accounts.details(args.account))


async def _show_job(platform: Any, args: argparse.Namespace) -> Any:
    from ujumbe.dialects.native_campaigns import job_json

    return job_json(await platform.jobs.get_any(args.job))


def _phone_number_json(n: dict[str, Any]) -> dict[str, Any]:
    return {"number": n["number"], "sid": n["sid"], "rate": display(n["rate"]), "capabilities": n["capabilities"],
            "friendly_name": n["friendly_name"], "account_id": n["account_id"]}


async def _stock_phone_number(platform: Any, args: argparse.Namespace) -> Any:
    return _phone_number_json(await platform.phone_numbers.stock(
        args.number, args.rate, capabilities=args.capabilities, sid=args.sid, friendly_name=args.friendly_name))


async def _list_phone_numbers(platform: Any, args: argparse.Namespace) -> Any:
    return [_phone_number_json(n) for n in await platform.phone_numbers.all()]


async def _create_api_key(platform: Any, args: argparse.Namespace) -> Any:
    api_key = await platform.accounts.new_api_key(args.account, args.label)
    return {"account_id": args.account, "api_key": api_key, "label": args.label}


async def _add_credits(platform: Any, args: argparse.Namespace) -> Any:
    balance = await platform.credits.add(args.account, args.amount, note=args.note)
    return {"account_id": args.account, "balance": display(balance)}


async def _set_callbacks(platform: Any, args: argparse.Namespace) -> Any:
    from ujumbe.services.callbacks import masked

    urls = {
        column: (value or None)
        for column, value in (("dlr_url", args.dlr_url), ("inbound_url", args.inbound_url),
                              ("subscription_url", args.subscription_url))
        if value is not None
    }
    for url in urls.values():
        if url:
            await platform.check_callback_url(url)
    account = await platform.accounts.set_callbacks(args.account, urls)
    return {"dlr_url": masked(account.dlr_url), "inbound_url": masked(account.inbound_url),
            "subscription_url": masked(account.subscription_url)}


async def _set_price(platform: Any, args: argparse.Namespace) -> Any:
    price = await platform.credits.set_price(args.network, args.amount, args.channel, args.unit)
    # the price as stored, in credits like every other figure (not the text typed)
    out = {"network": args.network, "channel": args.channel, "price": display(price)}
    if args.channel == "voice":
        out["unit"] = args.unit or "per_minute"
    return out


async def _add_number(platform: Any, args: argparse.Namespace) -> Any:
    await platform.accounts.get(args.account)
    await platform.senders.assign_number(args.account, args.number, kind=args.kind, dialect=args.dialect)
    return {"number": args.number, "account_id": args.account, "kind": args.kind, "dialect": args.dialect}


async def _smpp_credentials(platform: Any, args: argparse.Namespace) -> Any:
    from ujumbe.services import smpp_credentials

    password = _needed(_secret(args, "password", prompt="SMPP password (at most 8 characters)"), "password")
    return await smpp_credentials.set_credentials(
        platform.store, args.account, args.system_id, password, max_binds=args.max_binds, tps=args.tps,
        limits=True,
    )


def _connector_password(args: argparse.Namespace) -> str | None:
    """--password-file, --password - or --password, else UJUMBE_CONNECTOR_PASSWORD,
    else asked on a terminal, else a line of stdin: a password on the command
    line is visible to every user of the machine."""
    return _secret(args, "password", prompt="operator password", env="UJUMBE_CONNECTOR_PASSWORD",
                   stdin_fallback=True)


def _connector_fields(args: argparse.Namespace) -> dict[str, Any]:
    names = {"host": "host", "port": "port", "system_id": "system_id", "system_type": "system_type",
             "bind": "bind_mode", "binds": "binds", "window": "window_size", "tps": "tps", "tls": "tls",
             "data_coding": "data_coding", "long_messages": "long_messages", "enabled": "enabled", "kind": "kind",
             "username": "system_id"}
    fields = {column: getattr(args, attr) for attr, column in names.items() if getattr(args, attr, None) is not None}
    options = {k: v for k in ("starttls", "verify", "bounce_domain", "transport", "from_user", "from_domain",
                              "max_calls", "cps", "ring_timeout_s", "max_duration_s")
               if (v := getattr(args, k, None)) is not None}
    if options:
        fields["options"] = options
    return fields


def _connector_json(row: dict[str, Any]) -> dict[str, Any]:
    """As the admin API shows it: the options' names (bind, window), ISO times."""
    from ujumbe.http.admin import connector_out

    out = connector_out(row)
    del out["status"]  # the running connector's state is the server's, not this command's
    return out


async def _add_connector(platform: Any, args: argparse.Namespace) -> Any:
    fields = {"name": args.name, **_connector_fields(args), "password": _connector_password(args)}
    return _connector_json(await platform.routing.add_connector(fields))


async def _set_connector(platform: Any, args: argparse.Namespace) -> Any:
    changes = _connector_fields(args)
    if args.password is not None or args.password_file is not None or args.new_password:
        changes["password"] = _connector_password(args)
    return _connector_json(await platform.routing.update_connector(args.name, changes))


async def _list_connectors(platform: Any, args: argparse.Namespace) -> Any:
    return [_connector_json(c) for c in await platform.routing.list_connectors()]


async def _remove_connector(platform: Any, args: argparse.Namespace) -> Any:
    await platform.routing.remove_connector(args.name)
    return {"removed": args.name}


async def _add_domain(platform: Any, args: argparse.Namespace) -> Any:
    return await platform.domains.add(args.account, args.domain, selector=args.selector)


async def _list_domains(platform: Any, args: argparse.Namespace) -> Any:
    return await platform.domains.list(args.account)


async def _domain_dns(platform: Any, args: argparse.Namespace) -> Any:
    d = await platform.domains.get(args.domain)
    print(f'{d["dns_name"]}. IN TXT "{d["dns_txt"]}"')
    return None


async def _remove_domain(platform: Any, args: argparse.Namespace) -> Any:
    await platform.domains.remove(args.domain)
    return {"removed": args.domain}


async def _add_route(platform: Any, args: argparse.Namespace) -> Any:
    from ujumbe.http.admin import route_out

    return route_out(await platform.routing.add_route(
        kind=args.kind, value=args.value or "", connector=args.connector, priority=args.priority, account_id=args.account,
    ))


async def _list_routes(platform: Any, args: argparse.Namespace) -> Any:
    from ujumbe.http.admin import route_out

    return [route_out(r) for r in await platform.routing.list_routes(args.account)]


async def _remove_route(platform: Any, args: argparse.Namespace) -> Any:
    await platform.routing.remove_route(args.id)
    return {"removed": args.id}


async def _add_sender(platform: Any, args: argparse.Namespace) -> Any:

    networks = [n for n in (args.networks or "").split(",") if n.strip()]
    sender = await platform.senders.add(args.account, args.name, networks or None)
    return {"account_id": args.account, "name": sender.name, "networks": list(sender.networks or []) or None}


async def _add_service(platform: Any, args: argparse.Namespace) -> Any:

    service = await platform.premium.create(
        args.account, shortcode=args.shortcode, kind=args.type,
        keywords=[k for k in (args.keywords or "").split(",") if k.strip()], name=args.name,
        api_token=_secret(args, "api_token"), service_id=args.service_id, dialect=args.dialect,
    )
    return {"service_id": service.id, "account_id": service.account_id, "shortcode": service.shortcode,
            "type": service.kind, "keywords": list(service.keywords), "api_token_set": service.api_token_set}


# --- senders pending|approve|reject: the operator decides on tenants' requests ---


def _sender_out(s: Any) -> dict[str, Any]:
    return {"account_id": s.account_id, "name": s.name, "networks": list(s.networks) if s.networks else None,
            "status": s.status, "reason": s.reason}


async def _pending_senders(platform: Any, args: argparse.Namespace) -> Any:
    return [_sender_out(s) for s in await platform.senders.all(None if args.all else "pending")]


async def _approve_sender(platform: Any, args: argparse.Namespace) -> Any:
    return _sender_out(await platform.senders.approve(args.account, args.name))


async def _reject_sender(platform: Any, args: argparse.Namespace) -> Any:
    return _sender_out(await platform.senders.reject(args.account, args.name, args.reason))


def _sender_decision_commands(senders: Any) -> None:
    p = admin_command(senders.add_parser("pending", help="sender names accounts asked for, awaiting a decision"),
                      _pending_senders)
    p.add_argument("--all", action="store_true", help="every account's sender names, whatever their status")
    p = admin_command(senders.add_parser("approve", help="approve an account's request for a sender name"),
                      _approve_sender)
    p.add_argument("account")
    p.add_argument("name")
    p = admin_command(senders.add_parser("reject", help="reject a request for a sender name (or withdraw a grant)"),
                      _reject_sender)
    p.add_argument("account")
    p.add_argument("name")
    p.add_argument("--reason", help="why, shown to the account")


def _embedded_database(args: argparse.Namespace, verb: str) -> Path | None:
    settings = _settings(args)
    if settings.database_url and not settings.database_url.startswith("sqlite:///"):
        print(f"ujumbe: {verb} is for the embedded database; for PostgreSQL use pg_dump and pg_restore, and keep "
              "the server secret (UJUMBE_SECRET_KEY) with the dump (docs/operations.md)", file=sys.stderr)
        return None
    if settings.database_url:
        return Path(settings.database_url.removeprefix("sqlite:///"))
    return settings.data_dir / "ujumbe.db"


def backup_command(args: argparse.Namespace) -> int:
    """`ujumbe backup PATH`: a consistent copy while the server serves."""
    from ujumbe.services.backup import backup_file

    database = _embedded_database(args, "backup")
    if database is None:
        return 2
    try:
        size = backup_file(database, args.path)
    except UjumbeError as exc:
        print(f"ujumbe: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps({"backup": str(Path(args.path).resolve()), "bytes": size}))
    print("note: keep the server secret with it (secret.key in the data dir, or UJUMBE_SECRET_KEY): "
          "without it the encrypted passwords, tokens and codes in the backup cannot be read", file=sys.stderr)
    return 0


def restore_command(args: argparse.Namespace) -> int:
    """`ujumbe restore PATH`: bring a backup back, with no server running."""
    from ujumbe.services.backup import restore_file

    database = _embedded_database(args, "restore")
    if database is None:
        return 2
    try:
        restore_file(args.path, database)
    except UjumbeError as exc:
        print(f"ujumbe: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps({"restored": str(database.resolve()), "from": str(Path(args.path).resolve())}))
    return 0


def smsc_sim(args: argparse.Namespace, rest: list[str]) -> int:
    from ujumbe.channels.smpp import sim

    return sim.main(rest) or 0


ACCOUNT_HELP = "the account: its id (acc_...), username or email"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ujumbe", description="Ujumbe messaging platform")
    _store_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the API and workers")
    p.add_argument("--host", default=os.environ.get("UJUMBE_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("UJUMBE_PORT", "8080")))
    _store_options(p)
    p.add_argument("--role", choices=("all", "api", "worker"), default="all",
                   help="api and worker processes can run apart: on PostgreSQL, or on one machine's embedded database")
    p.add_argument("--smtp", metavar="URL", help="send the embedded default's email through this relay instead of "
                   "the email simulator: smtp://user:pass@host:587 or smtps://host:465 (UJUMBE_SMTP_URL)")
    p.add_argument("--metrics-listen", metavar="HOST:PORT", default=None,
                   help="also serve /metrics (no admin token), /healthz and /readyz on this address, e.g. "
                        "127.0.0.1:9464 (UJUMBE_METRICS_LISTEN); a --role worker process is scraped there")
    p.add_argument("--processes", type=int, default=int(os.environ.get("UJUMBE_PROCESSES", "1")), metavar="N",
                   help="run N processes, one per core (default 1): they serve the API on one port; with "
                        "--role all one of them runs the workers instead")
    p.set_defaults(func=serve)

    admin_command(sub.add_parser("migrate", help="apply schema migrations"), _migrate)

    p = sub.add_parser("backup", help="copy the embedded database to PATH, consistently, while the server runs")
    p.add_argument("path")
    _store_options(p)
    p.set_defaults(func=backup_command)
    p = sub.add_parser("restore", help="replace the embedded database with the backup at PATH (server stopped)")
    p.add_argument("path")
    _store_options(p)
    p.set_defaults(func=restore_command)

    accounts = sub.add_parser("accounts", help="manage accounts").add_subparsers(dest="action", required=True)
    p = admin_command(accounts.add_parser("create", help="create an account and print its credentials as JSON"), _create_account)
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    _secret_options(p, "password", "at least 8 characters (default: asked for on the terminal)")
    p.add_argument("--username", help="default: the email's local part")
    p.add_argument("--region", default="KE", help="default region for local numbers (ISO code, e.g. KE, NP, VE)")
    p.add_argument("--credits", help="initial credit")
    admin_command(accounts.add_parser("list", help="list accounts with their balance"), _list_accounts)
    p = admin_command(accounts.add_parser("show", help="an account: balance, callback URLs, API keys (prefixes only)"),
                      _show_account)
    p.add_argument("account", help=ACCOUNT_HELP)

    api_keys = sub.add_parser("api-keys", help="API keys").add_subparsers(dest="action", required=True)
    p = admin_command(api_keys.add_parser("create", help="issue another API key for an account (printed once)"),
                      _create_api_key)
    p.add_argument("account", help=ACCOUNT_HELP)
    p.add_argument("--label", default="cli", help="a note to tell keys apart (default: cli)")

    credits = sub.add_parser("credits", help="prepaid credit").add_subparsers(dest="action", required=True)
    p = admin_command(credits.add_parser("add", help="add credit to an account"), _add_credits)
    p.add_argument("account", help=ACCOUNT_HELP)
    p.add_argument("amount")
    p.add_argument("--note", default="top-up")

    callbacks = sub.add_parser("callbacks", help="callback URLs").add_subparsers(dest="action", required=True)
    p = admin_command(callbacks.add_parser("set", help="set an account's callback URLs ('' clears one)"), _set_callbacks)
    p.add_argument("account", help=ACCOUNT_HELP)
    p.add_argument("--dlr-url")
    p.add_argument("--inbound-url")
    p.add_argument("--subscription-url")

    prices = sub.add_parser("prices", help="price per part").add_subparsers(dest="action", required=True)
    p = admin_command(prices.add_parser("set", help="set the price per part for a network ('*' for the default)"), _set_price)
    p.add_argument("network")
    p.add_argument("amount")
    p.add_argument("--channel", default="sms", help="sms, email or voice")
    p.add_argument("--unit", choices=("per_minute", "per_call"),
                   help="voice: per started minute of the answered call (default) or once per answered call")

    numbers = sub.add_parser("numbers", help="short codes and long numbers").add_subparsers(dest="action", required=True)
    p = admin_command(numbers.add_parser("add", help="give an account a number that receives inbound messages"), _add_number)
    p.add_argument("account", help=ACCOUNT_HELP)
    p.add_argument("number")
    p.add_argument("--kind", choices=("shortcode", "long"), default="shortcode")
    p.add_argument("--dialect", default="native", help="format inbound messages are forwarded in")

    smpp = sub.add_parser("smpp", help="the SMPP server customers bind to").add_subparsers(dest="action", required=True)
    p = admin_command(smpp.add_parser("credentials", help="set an account's SMPP system_id, password and limits"), _smpp_credentials)
    p.add_argument("account", help=ACCOUNT_HELP)
    p.add_argument("--system-id", required=True, help="at most 15 characters")
    _secret_options(p, "password", "at most 8 characters (SMPP 3.4; default: asked for on the terminal)")
    p.add_argument("--max-binds", type=int, default=2, help="concurrent binds allowed (default 2)")
    p.add_argument("--tps", type=float, default=None, help="submits per second over all binds (default unlimited)")

    connectors = sub.add_parser("connectors", help="operator (SMSC) connectors").add_subparsers(dest="action", required=True)

    def connector_options(p: argparse.ArgumentParser, creating: bool) -> None:
        p.add_argument("name")
        p.add_argument("--host", required=creating)
        p.add_argument("--port", type=int, required=creating)
        p.add_argument("--kind", choices=("smpp", "smtp", "sip"),
                       help="smpp (default), smtp (an email relay) or sip (a voice trunk)")
        p.add_argument("--system-id", help="SMPP system_id (required for smpp)")
        p.add_argument("--username", help="smtp: the relay's AUTH username; sip: the digest username (none: no auth)")
        p.add_argument("--transport", choices=("udp", "tcp"), help="sip: the transport (default udp)")
        p.add_argument("--from-user", help="sip: the caller id when a message gives none")
        p.add_argument("--from-domain", help="sip: the From domain (default the trunk's host)")
        p.add_argument("--max-calls", type=int, help="sip: calls at once (default 10)")
        p.add_argument("--cps", type=float, help="sip: calls started per second (default unlimited)")
        p.add_argument("--ring-timeout", dest="ring_timeout_s", type=float, help="sip: seconds of ringing before CANCEL")
        p.add_argument("--max-duration", dest="max_duration_s", type=float, help="sip: seconds before we hang up")
        p.add_argument("--starttls", action=argparse.BooleanOptionalAction, default=None, help="smtp: upgrade with STARTTLS")
        p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=None,
                       help="smtp: check the relay's certificate (default on)")
        p.add_argument("--bounce-domain", help="smtp: the domain of VERP return paths (default: the sender's)")
        _secret_options(p, "password", "SMPP, SMTP or SIP password (else UJUMBE_CONNECTOR_PASSWORD, else asked)")
        p.add_argument("--system-type")
        p.add_argument("--bind", choices=("transceiver", "transmitter", "receiver"))
        p.add_argument("--binds", type=int, help="connections to keep bound (default 1)")
        p.add_argument("--window", type=int, help="requests in flight per bind (default 64)")
        p.add_argument("--tps", type=float, help="submits per second per bind (default unlimited)")
        p.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None)
        p.add_argument("--data-coding", choices=("gsm7", "latin1"))
        p.add_argument("--long-messages", choices=("udh", "udh16", "payload", "sar"))
        p.add_argument("--enabled", action=argparse.BooleanOptionalAction, default=None)

    p = admin_command(connectors.add_parser("add", help="add an SMPP (or --kind smtp, --kind sip) connector; running workers start it within seconds"), _add_connector)
    connector_options(p, True)
    p = admin_command(connectors.add_parser("set", help="change a connector (only the options given); it rebinds"), _set_connector)
    connector_options(p, False)
    p.add_argument("--new-password", action="store_true", help="ask for a new password")
    admin_command(connectors.add_parser("list", help="list connectors (passwords are never shown)"), _list_connectors)
    p = admin_command(connectors.add_parser("remove", help="remove a connector; its sends in flight finish first"), _remove_connector)
    p.add_argument("name")

    routes = sub.add_parser("routes", help="which connector carries which traffic").add_subparsers(dest="action", required=True)
    p = admin_command(routes.add_parser("add", help="route by prefix, network or default to a connector"), _add_route)
    p.add_argument("--kind", choices=("prefix", "network", "default"), required=True)
    p.add_argument("--value", help="the prefix (e.g. 2547) or network (e.g. Safaricom)")
    p.add_argument("--connector", required=True)
    p.add_argument("--priority", type=int, default=100, help="lower goes first; the next is the failover")
    p.add_argument("--account", help="only this account's traffic: id, username or email (default: everyone)")
    p = admin_command(routes.add_parser("list", help="list routes"), _list_routes)
    p.add_argument("--account", help="only this account's own routes: id, username or email")
    p = admin_command(routes.add_parser("remove", help="remove a route"), _remove_route)
    p.add_argument("id", type=int)

    domains = sub.add_parser("domains", help="email sending domains and their DKIM keys").add_subparsers(dest="action", required=True)
    p = admin_command(domains.add_parser("add", help="give an account a sending domain; generates its DKIM key and prints the DNS record"), _add_domain)
    p.add_argument("account")
    p.add_argument("domain")
    p.add_argument("--selector", help="the DKIM selector (default ujYYYYMM)")
    p = admin_command(domains.add_parser("list", help="an account's sending domains with their DNS records"), _list_domains)
    p.add_argument("account")
    p = admin_command(domains.add_parser("dns", help="print the DKIM TXT record to publish for a domain"), _domain_dns)
    p.add_argument("domain")
    p = admin_command(domains.add_parser("remove", help="remove a sending domain and its key"), _remove_domain)
    p.add_argument("domain")

    senders = sub.add_parser("senders", help="sender names").add_subparsers(dest="action", required=True)
    p = admin_command(senders.add_parser("add", help="allow an account a sender name (again: replaces its networks)"), _add_sender)
    p.add_argument("account", help=ACCOUNT_HELP)
    p.add_argument("name")
    p.add_argument("--networks", help="comma-separated networks it may reach, e.g. Safaricom,Airtel (default: all)")
    _sender_decision_commands(senders)

    services = sub.add_parser("services", help="premium short-code services").add_subparsers(dest="action", required=True)
    p = admin_command(services.add_parser("add", help="register a premium service and claim its short code"), _add_service)
    p.add_argument("account", help=ACCOUNT_HELP)
    p.add_argument("--shortcode", required=True)
    p.add_argument("--type", choices=("subscription", "on-demand"), required=True)
    p.add_argument("--keywords", help="comma-separated keywords, e.g. GAME,PLAY")
    p.add_argument("--name")
    _secret_options(p, "api_token", "the token the client expects in our pushes (Tilil api_token)")
    p.add_argument("--service-id", type=int, help="the id clients send as service_id (default: next free)")
    p.add_argument("--dialect", default="tilil", help="format inbound messages to the short code are forwarded in")

    phone_numbers = sub.add_parser("phone-numbers", help="the phone-number inventory accounts buy from").add_subparsers(
        dest="action", required=True)
    p = admin_command(phone_numbers.add_parser("add", help="stock a number accounts may buy"), _stock_phone_number)
    p.add_argument("number")
    p.add_argument("--rate", required=True, help="credits charged when an account buys it")
    p.add_argument("--capabilities", default="Voice, SMS")
    p.add_argument("--sid", help="its SID (default: a new random one)")
    p.add_argument("--friendly-name", default="")
    admin_command(phone_numbers.add_parser("list", help="every stocked number and its owner"), _list_phone_numbers)

    jobs = sub.add_parser("jobs", help="contact imports and campaign reports").add_subparsers(dest="action", required=True)
    p = admin_command(jobs.add_parser("show", help="a job: status, progress (percent), result"), _show_job)
    p.add_argument("job", type=int)

    sub.add_parser("smsc-sim", help="run the SMPP SMSC simulator (options: ujumbe smsc-sim --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "smsc-sim" in argv:
        i = argv.index("smsc-sim")
        return smsc_sim(argparse.Namespace(), argv[i + 1 :])
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
