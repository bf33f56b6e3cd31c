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
from ujumbe.core.errors import UjumbeError
from ujumbe.core.pricing import display


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    if getattr(args, "data_dir", None):
        settings.data_dir = Path(args.data_dir)
    return settings


def _with_platform(fn: Callable[[Any, argparse.Namespace], Awaitable[Any]]) -> Callable[[argparse.Namespace], int]:
    """Run an admin command against the store, without starting workers."""

    def command(args: argparse.Namespace) -> int:
        from ujumbe.runtime import Platform

        async def main() -> Any:
            settings = _settings(args)
            settings.simulator = False
            platform = Platform(settings)
            await platform.open()
            try:
                return await fn(platform, args)
            finally:
                await platform.store.close()

        try:
            result = asyncio.run(main())
        except UjumbeError as exc:
            print(json.dumps({"error": {"code": exc.code, "message": exc.message}}), file=sys.stderr)
            return 1
        if result is not None:
            print(json.dumps(result, indent=2, default=str))
        return 0

    return command


def admin_command(parser: argparse.ArgumentParser, fn: Callable[[Any, argparse.Namespace], Awaitable[Any]]) -> argparse.ArgumentParser:
    """An admin subcommand: it takes --data-dir and runs ``fn`` against the store."""
    parser.add_argument("--data-dir", default=argparse.SUPPRESS)
    parser.set_defaults(func=_with_platform(fn))
    return parser


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ujumbe.http.app import create_app
    from ujumbe.runtime import Platform

    if args.processes < 1:
        print("--processes must be 1 or more", file=sys.stderr)
        return 2
    settings = _settings(args)
    settings.host, settings.port, settings.role = args.host, args.port, args.role
    settings.smpp_port = smpp_port_from_env(SMPP_DEFAULT_PORT)  # serve listens for SMPP customers by default
    logging.basicConfig(level=os.environ.get("UJUMBE_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    platform = Platform(settings)
    where = settings.database_url.split("@")[-1] if settings.database_url else str(settings.data_dir / "ujumbe.db")
    logging.getLogger("ujumbe").info("starting role=%s store=%s", args.role, where)
    if args.role != "worker":
        logging.getLogger("ujumbe").info("dashboard on http://%s:%s/dashboard (API docs at /docs)",
                                         settings.host, settings.port)
    if args.role == "worker":
        return run_worker(platform)
    if args.processes > 1:
        return serve_processes(platform, args.processes)
    uvicorn.Server(_uvicorn_config(create_app(platform, role=args.role), settings)).run()
    return 0


def _uvicorn_config(app: Any, settings: Settings) -> Any:
    import uvicorn

    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                          loop="auto", http="auto")


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this process when its parent dies (even by SIGKILL),
    so no orphan keeps serving, or holding the embedded database's lock."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before that took effect
        os.kill(os.getpid(), signal.SIGTERM)


def serve_processes(platform: Any, n: int) -> int:
    """``serve --processes N``: N processes answer the API on one port, each
    with its own event loop, so the API uses more than one core.

    The parent binds the socket and forks the children, which inherit it; the
    kernel hands each new connection to whichever child accepts first, so a
    busy child takes fewer. The parent applies the migrations first (children
    racing to do so would collide) and holds the embedded database's lock for
    them. With ``--role all`` the last child runs the workers and no HTTP: a
    message costs the workers more CPU than its accept, and sharing an event
    loop slows both (bench/accept.py: role all vs api+worker). A child that
    dies is started again.
    """
    import signal
    import time

    import uvicorn

    from ujumbe.http.app import create_app
    from ujumbe.runtime import Platform

    settings = platform.settings
    role = settings.role

    async def prepare() -> None:
        await platform.open()
        await platform.store.close()

    asyncio.run(prepare())
    if platform.store.dialect == "sqlite":
        platform.lock_data_dir(role)
    settings.parent_holds_lock = True
    sock = _uvicorn_config(None, settings).bind_socket()
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
                sock.close()
                code = run_worker(Platform(settings), "all")  # "all": it owns the leases, see Platform.start_workers
            else:
                app = create_app(Platform(settings), role="api")
                uvicorn.Server(_uvicorn_config(app, settings)).run(sockets=[sock])
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
    log.info("serving role=%s in %d processes on %s:%s", role, n, settings.host, settings.port)
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


def run_worker(platform: Any, role: str = "worker") -> int:
    """Run ``platform``'s workers (no HTTP) until SIGINT or SIGTERM; ``role``
    ``all`` when this process also owns the embedded database (its leases)."""
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await platform.start(role)
        await stop.wait()
        await platform.stop()

    try:
        import uvloop  # installed with uvicorn[standard]; the same loop as the API's
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
    return 0


async def _migrate(platform: Any, args: argparse.Namespace) -> Any:
    return {"migrations": "up to date"}


async def _create_account(platform: Any, args: argparse.Namespace) -> Any:
    return await platform.accounts.create(
        name=args.name, email=args.email, password=args.password, username=args.username,
        region=args.region, credits=args.credits,
    )


async def _add_credits(platform: Any, args: argparse.Namespace) -> Any:
    balance = await platform.credits.add(args.account, args.amount, note=args.note)
    return {"account_id": args.account, "balance": display(balance)}


async def _set_callbacks(platform: Any, args: argparse.Namespace) -> Any:
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
    return {"dlr_url": account.dlr_url, "inbound_url": account.inbound_url, "subscription_url": account.subscription_url}


async def _set_price(platform: Any, args: argparse.Namespace) -> Any:
    price = await platform.credits.set_price(args.network, args.amount, args.channel)
    # the price as stored, in credits like every other figure (not the text typed)
    return {"network": args.network, "channel": args.channel, "price": display(price)}


async def _add_number(platform: Any, args: argparse.Namespace) -> Any:
    from ujumbe.store import now_ms

    await platform.accounts.get(args.account)
    await platform.store.run(
        lambda tx: tx.execute(
            "INSERT INTO numbers (number, account_id, kind, dialect, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (number) DO UPDATE SET account_id = excluded.account_id, kind = excluded.kind, "
            "dialect = excluded.dialect",
            args.number, args.account, args.kind, args.dialect, now_ms(),
        )
    )
    return {"number": args.number, "account_id": args.account, "kind": args.kind, "dialect": args.dialect}


async def _smpp_credentials(platform: Any, args: argparse.Namespace) -> Any:
    from ujumbe.services import smpp_credentials

    return await smpp_credentials.set_credentials(
        platform.store, args.account, args.system_id, args.password, max_binds=args.max_binds, tps=args.tps,
        limits=True,
    )


def _connector_password(args: argparse.Namespace) -> str | None:
    """--password, else UJUMBE_CONNECTOR_PASSWORD, else a prompt: a password on
    the command line is visible to every user of the machine."""
    if args.password is not None:
        return str(args.password)
    env = os.environ.get("UJUMBE_CONNECTOR_PASSWORD")
    if env:
        return env
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("operator password: ")
    return sys.stdin.readline().rstrip("\n") or None


def _connector_fields(args: argparse.Namespace) -> dict[str, Any]:
    names = {"host": "host", "port": "port", "system_id": "system_id", "system_type": "system_type",
             "bind": "bind_mode", "binds": "binds", "window": "window_size", "tps": "tps", "tls": "tls",
             "data_coding": "data_coding", "long_messages": "long_messages", "enabled": "enabled"}
    return {column: getattr(args, attr) for attr, column in names.items() if getattr(args, attr, None) is not None}


async def _add_connector(platform: Any, args: argparse.Namespace) -> Any:
    fields = {"name": args.name, **_connector_fields(args), "password": _connector_password(args)}
    return await platform.routing.add_connector(fields)


async def _set_connector(platform: Any, args: argparse.Namespace) -> Any:
    changes = _connector_fields(args)
    if args.password is not None or args.new_password:
        changes["password"] = _connector_password(args)
    return await platform.routing.update_connector(args.name, changes)


async def _list_connectors(platform: Any, args: argparse.Namespace) -> Any:
    return await platform.routing.list_connectors()


async def _remove_connector(platform: Any, args: argparse.Namespace) -> Any:
    await platform.routing.remove_connector(args.name)
    return {"removed": args.name}


async def _add_route(platform: Any, args: argparse.Namespace) -> Any:
    return await platform.routing.add_route(
        kind=args.kind, value=args.value or "", connector=args.connector, priority=args.priority, account_id=args.account,
    )


async def _list_routes(platform: Any, args: argparse.Namespace) -> Any:
    return await platform.routing.list_routes(args.account)


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
        api_token=args.api_token, service_id=args.service_id, dialect=args.dialect,
    )
    return {"service_id": service.id, "account_id": service.account_id, "shortcode": service.shortcode,
            "type": service.kind, "keywords": list(service.keywords), "api_token_set": service.api_token_set}


def smsc_sim(args: argparse.Namespace, rest: list[str]) -> int:
    from ujumbe.channels.smpp import sim

    return sim.main(rest) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ujumbe", description="Ujumbe messaging platform")
    parser.add_argument("--data-dir", help="where the embedded database lives (default ./ujumbe-data or UJUMBE_DATA_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the API and workers")
    p.add_argument("--host", default=os.environ.get("UJUMBE_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("UJUMBE_PORT", "8080")))
    p.add_argument("--data-dir", default=argparse.SUPPRESS)
    p.add_argument("--role", choices=("all", "api", "worker"), default="all",
                   help="api and worker processes can run apart: on PostgreSQL, or on one machine's embedded database")
    p.add_argument("--processes", type=int, default=int(os.environ.get("UJUMBE_PROCESSES", "1")), metavar="N",
                   help="run N processes, one per core (default 1): they serve the API on one port; with "
                        "--role all one of them runs the workers instead")
    p.set_defaults(func=serve)

    admin_command(sub.add_parser("migrate", help="apply schema migrations"), _migrate)

    accounts = sub.add_parser("accounts", help="manage accounts").add_subparsers(dest="action", required=True)
    p = admin_command(accounts.add_parser("create", help="create an account and print its credentials as JSON"), _create_account)
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--username")
    p.add_argument("--region", default="KE", help="default region for local numbers (ISO code, e.g. KE, NP, VE)")
    p.add_argument("--credits", help="initial credit")

    credits = sub.add_parser("credits", help="prepaid credit").add_subparsers(dest="action", required=True)
    p = admin_command(credits.add_parser("add", help="add credit to an account"), _add_credits)
    p.add_argument("account")
    p.add_argument("amount")
    p.add_argument("--note", default="top-up")

    callbacks = sub.add_parser("callbacks", help="callback URLs").add_subparsers(dest="action", required=True)
    p = admin_command(callbacks.add_parser("set", help="set an account's callback URLs ('' clears one)"), _set_callbacks)
    p.add_argument("account")
    p.add_argument("--dlr-url")
    p.add_argument("--inbound-url")
    p.add_argument("--subscription-url")

    prices = sub.add_parser("prices", help="price per part").add_subparsers(dest="action", required=True)
    p = admin_command(prices.add_parser("set", help="set the price per part for a network ('*' for the default)"), _set_price)
    p.add_argument("network")
    p.add_argument("amount")
    p.add_argument("--channel", default="sms")

    numbers = sub.add_parser("numbers", help="short codes and long numbers").add_subparsers(dest="action", required=True)
    p = admin_command(numbers.add_parser("add", help="give an account a number that receives inbound messages"), _add_number)
    p.add_argument("account")
    p.add_argument("number")
    p.add_argument("--kind", choices=("shortcode", "long"), default="shortcode")
    p.add_argument("--dialect", default="native", help="format inbound messages are forwarded in")

    smpp = sub.add_parser("smpp", help="the SMPP server customers bind to").add_subparsers(dest="action", required=True)
    p = admin_command(smpp.add_parser("credentials", help="set an account's SMPP system_id, password and limits"), _smpp_credentials)
    p.add_argument("account")
    p.add_argument("--system-id", required=True, help="at most 15 characters")
    p.add_argument("--password", required=True, help="at most 8 characters (SMPP 3.4)")
    p.add_argument("--max-binds", type=int, default=2, help="concurrent binds allowed (default 2)")
    p.add_argument("--tps", type=float, default=None, help="submits per second over all binds (default unlimited)")

    connectors = sub.add_parser("connectors", help="operator (SMSC) connectors").add_subparsers(dest="action", required=True)

    def connector_options(p: argparse.ArgumentParser, creating: bool) -> None:
        p.add_argument("name")
        p.add_argument("--host", required=creating)
        p.add_argument("--port", type=int, required=creating)
        p.add_argument("--system-id", required=creating)
        p.add_argument("--password", help="SMPP password (else UJUMBE_CONNECTOR_PASSWORD, else asked)")
        p.add_argument("--system-type")
        p.add_argument("--bind", choices=("transceiver", "transmitter", "receiver"))
        p.add_argument("--binds", type=int, help="connections to keep bound (default 1)")
        p.add_argument("--window", type=int, help="requests in flight per bind (default 64)")
        p.add_argument("--tps", type=float, help="submits per second per bind (default unlimited)")
        p.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None)
        p.add_argument("--data-coding", choices=("gsm7", "latin1"))
        p.add_argument("--long-messages", choices=("udh", "udh16", "payload", "sar"))
        p.add_argument("--enabled", action=argparse.BooleanOptionalAction, default=None)

    p = admin_command(connectors.add_parser("add", help="add an SMPP connector; running workers bind it within seconds"), _add_connector)
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
    p.add_argument("--account", help="only this account's traffic (default: everyone)")
    p = admin_command(routes.add_parser("list", help="list routes"), _list_routes)
    p.add_argument("--account", help="only this account's own routes")
    p = admin_command(routes.add_parser("remove", help="remove a route"), _remove_route)
    p.add_argument("id", type=int)

    senders = sub.add_parser("senders", help="sender names").add_subparsers(dest="action", required=True)
    p = admin_command(senders.add_parser("add", help="allow an account a sender name (again: replaces its networks)"), _add_sender)
    p.add_argument("account")
    p.add_argument("name")
    p.add_argument("--networks", help="comma-separated networks it may reach, e.g. Safaricom,Airtel (default: all)")

    services = sub.add_parser("services", help="premium short-code services").add_subparsers(dest="action", required=True)
    p = admin_command(services.add_parser("add", help="register a premium service and claim its short code"), _add_service)
    p.add_argument("account")
    p.add_argument("--shortcode", required=True)
    p.add_argument("--type", choices=("subscription", "on-demand"), required=True)
    p.add_argument("--keywords", help="comma-separated keywords, e.g. GAME,PLAY")
    p.add_argument("--name")
    p.add_argument("--api-token", help="the token the client expects in our pushes (Tilil api_token)")
    p.add_argument("--service-id", type=int, help="the id clients send as service_id (default: next free)")
    p.add_argument("--dialect", default="tilil", help="format inbound messages to the short code are forwarded in")

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
