"""The ``ujumbe`` command: serve, migrate, and administer accounts."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ujumbe.config import Settings
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


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ujumbe.http.app import create_app
    from ujumbe.runtime import Platform

    settings = _settings(args)
    settings.host, settings.port, settings.role = args.host, args.port, args.role
    logging.basicConfig(level=os.environ.get("UJUMBE_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    platform = Platform(settings)
    where = settings.database_url.split("@")[-1] if settings.database_url else str(settings.data_dir / "ujumbe.db")
    logging.getLogger("ujumbe").info("starting role=%s store=%s", args.role, where)
    if args.role == "worker":
        return _run_worker(platform)
    app = create_app(platform, role=args.role)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, loop="auto", http="auto")
    return 0


def _run_worker(platform: Any) -> int:
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await platform.start("worker")
        await stop.wait()
        await platform.stop()

    asyncio.run(main())
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
    await platform.credits.set_price(args.network, args.amount, args.channel)
    return {"network": args.network, "channel": args.channel, "price": args.amount}


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
                   help="api and worker processes can run apart when they share PostgreSQL")
    p.set_defaults(func=serve)

    p = sub.add_parser("migrate", help="apply schema migrations")
    p.add_argument("--data-dir", default=argparse.SUPPRESS)
    p.set_defaults(func=_with_platform(_migrate))

    accounts = sub.add_parser("accounts", help="manage accounts").add_subparsers(dest="action", required=True)
    p = accounts.add_parser("create", help="create an account and print its credentials as JSON")
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--username")
    p.add_argument("--region", default="KE", help="default region for local numbers (ISO code, e.g. KE, NP, VE)")
    p.add_argument("--credits", help="initial credit")
    p.add_argument("--data-dir", default=argparse.SUPPRESS)
    p.set_defaults(func=_with_platform(_create_account))

    credits = sub.add_parser("credits", help="prepaid credit").add_subparsers(dest="action", required=True)
    p = credits.add_parser("add", help="add credit to an account")
    p.add_argument("account")
    p.add_argument("amount")
    p.add_argument("--note", default="top-up")
    p.add_argument("--data-dir", default=argparse.SUPPRESS)
    p.set_defaults(func=_with_platform(_add_credits))

    callbacks = sub.add_parser("callbacks", help="callback URLs").add_subparsers(dest="action", required=True)
    p = callbacks.add_parser("set", help="set an account's callback URLs ('' clears one)")
    p.add_argument("account")
    p.add_argument("--dlr-url")
    p.add_argument("--inbound-url")
    p.add_argument("--subscription-url")
    p.add_argument("--data-dir", default=argparse.SUPPRESS)
    p.set_defaults(func=_with_platform(_set_callbacks))

    prices = sub.add_parser("prices", help="price per part").add_subparsers(dest="action", required=True)
    p = prices.add_parser("set", help="set the price per part for a network ('*' for the default)")
    p.add_argument("network")
    p.add_argument("amount")
    p.add_argument("--channel", default="sms")
    p.add_argument("--data-dir", default=argparse.SUPPRESS)
    p.set_defaults(func=_with_platform(_set_price))

    numbers = sub.add_parser("numbers", help="short codes and long numbers").add_subparsers(dest="action", required=True)
    p = numbers.add_parser("add", help="give an account a number that receives inbound messages")
    p.add_argument("account")
    p.add_argument("number")
    p.add_argument("--kind", choices=("shortcode", "long"), default="shortcode")
    p.add_argument("--dialect", default="native", help="format inbound messages are forwarded in")
    p.add_argument("--data-dir", default=argparse.SUPPRESS)
    p.set_defaults(func=_with_platform(_add_number))

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
