"""An SMSC simulator on Ujumbe's own SMPP stack, for development, tests and benchmarks.

    python -m ujumbe.channels.smpp.sim --port 2775 --latency-ms 20 --receipt-delay-ms 500

It accepts any credentials (or only ``--system-id/--password`` when given),
answers submit_sm/data_sm after ``--latency-ms``, gives each part an id
(``--id-style hex|decimal``; ``--receipt-id-style`` may differ, as real SMSCs'
do) and sends a delivery receipt per part after ``--receipt-delay-ms`` when
registered_delivery asks for one. Random outcomes: ``--reject-rate`` (submit
refused with ESME_RSUBMITFAIL), ``--undeliv-rate``, ``--expired-rate``;
``--seed`` makes them repeatable. ``--tps`` caps each account (ESME_RTHROTTLED).

Deterministic outcomes by the destination's last four digits:

    ...0001  submit_sm refused: ESME_RINVDSTADR (0x0B)
    ...0002  receipt stat:UNDELIV err:001
    ...0003  receipt stat:EXPIRED
    ...0004  receipt stat:REJECTD err:002
    ...0005  submit_sm refused: ESME_RTHROTTLED (0x58), every time
    ...0006  accepted, but no receipt ever comes
    ...0007  submit_sm refused: ESME_RMSGQFUL (0x14), every time

``inject_mo(sender, recipient, text)`` sends a mobile-originated message
(concatenated with an 8-bit UDH when long) to a bound receiver/transceiver.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ujumbe.core.encoding import GSM7, UCS2, encode_part, segment
from ujumbe.core.states import State

from .pdu import (
    DELIVER_SM,
    ESM_UDHI,
    ESME_RINVDSTADR,
    ESME_RMSGQFUL,
    ESME_RSUBMITFAIL,
    ESME_RTHROTTLED,
    Pdu,
    SmppError,
)
from .receipts import receipt_pdu
from .server import SmppServer
from .session import SmppSession

log = logging.getLogger("ujumbe.smpp.sim")

_SUBMIT_FAIL = {"0001": ESME_RINVDSTADR, "0005": ESME_RTHROTTLED, "0007": ESME_RMSGQFUL}
_RECEIPT_FAIL = {"0002": (State.UNDELIVERED, "001"), "0003": (State.EXPIRED, "000"), "0004": (State.REJECTED, "002")}


@dataclass
class SimAccount:
    id: str
    max_binds: int | None = None
    tps: float | None = None


class SmscSimulator:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 2775,
        *,
        system_id: str | None = None,
        password: str | None = None,
        latency_ms: float = 0.0,
        receipt_delay_ms: float = 500.0,
        receipts: bool = True,
        id_style: str = "hex",
        receipt_id_style: str | None = None,
        reject_rate: float = 0.0,
        undeliv_rate: float = 0.0,
        expired_rate: float = 0.0,
        tps: float | None = None,
        max_binds: int = 10,
        window: int = 64,
        seed: int | None = None,
        first_id: int | None = None,
        clock_offset_ms: int = 0,
    ) -> None:
        self.system_id = system_id
        self.password = password
        self.latency = latency_ms / 1000
        self.receipt_delay = receipt_delay_ms / 1000
        self.receipts = receipts
        self.id_style = id_style
        self.receipt_id_style = receipt_id_style or id_style
        self.reject_rate = reject_rate
        self.undeliv_rate = undeliv_rate
        self.expired_rate = expired_rate
        self.tps = tps
        self.max_binds = max_binds
        self.rng = random.Random(seed)
        self.first_id = first_id if first_id is not None else 0x10000000 + (seed or 0)
        self._ids = itertools.count(self.first_id)
        self.clock_offset_ms = clock_offset_ms
        self._ref = itertools.count(1)
        self.submitted: list[Pdu] = []  # every accepted submit, for tests
        self.keep_submitted = True
        self.in_flight = 0  # submits received and not yet answered
        self.max_in_flight = 0
        self.last_account: str | None = None
        self.server = SmppServer(
            host,
            port,
            authenticate=self._authenticate,
            on_submit=self._on_submit,
            system_id="ujumbe-sim",
            window=window,
            max_binds=max_binds,
        )

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    async def _authenticate(self, system_id: str, password: str, system_type: str, mode: str, peer: Any) -> SimAccount | None:
        if self.system_id is not None and (system_id != self.system_id or password != self.password):
            return None
        self.last_account = system_id
        return SimAccount(system_id, self.max_binds, self.tps)

    def restart_ids(self) -> None:
        """Count message ids from the first one again, as an SMSC restarted."""
        self._ids = itertools.count(self.first_id)

    def _make_id(self, n: int, style: str) -> str:
        return format(n, "x") if style == "hex" else str(n)

    async def _on_submit(self, session: SmppSession, account: SimAccount, pdu: Pdu) -> str:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            dest = pdu.get("destination_addr")
            tail = dest[-4:]
            status = _SUBMIT_FAIL.get(tail)
            if status is None and self.reject_rate and self.rng.random() < self.reject_rate:
                status = ESME_RSUBMITFAIL
            if status is not None:
                raise SmppError(status)
            n = next(self._ids)
            message_id = self._make_id(n, self.id_style)
            if self.keep_submitted:
                self.submitted.append(pdu)
            if self.receipts and pdu.get("registered_delivery") & 0x03 and tail != "0006":
                state, err = _RECEIPT_FAIL.get(tail, (State.DELIVERED, "000"))
                if state == State.DELIVERED:
                    r = self.rng.random() if (self.undeliv_rate or self.expired_rate) else 1.0
                    if r < self.undeliv_rate:
                        state, err = State.UNDELIVERED, "001"
                    elif r < self.undeliv_rate + self.expired_rate:
                        state, err = State.EXPIRED, "000"
                rid = self._make_id(n, self.receipt_id_style)
                receipt = receipt_pdu(
                    rid,
                    state,
                    source_addr=dest,
                    destination_addr=pdu.get("source_addr"),
                    submit_at_ms=int(time.time() * 1000) + self.clock_offset_ms,
                    done_at_ms=int(time.time() * 1000) + self.clock_offset_ms,
                    err=err,
                    text=_preview(pdu),
                )
                asyncio.get_running_loop().call_later(self.receipt_delay, self.server.push, account.id, receipt)
            return message_id
        finally:
            self.in_flight -= 1

    def inject_mo(self, sender: str, recipient: str, text: str, account: str | None = None) -> int:
        """Queue an MO for ``account`` (default: the last one that bound); returns parts sent."""
        target = account or self.last_account
        if target is None:
            raise RuntimeError("no account has bound yet; pass account=")
        seg = segment(text)
        dc = 8 if seg.encoding == UCS2 else 0
        ref = next(self._ref) & 0xFF
        total = len(seg.parts)
        for i, part in enumerate(seg.parts, 1):
            body = encode_part(part, seg.encoding if seg.encoding == UCS2 else GSM7)
            esm = 0
            if total > 1:
                body = bytes((5, 0, 3, ref, total, i)) + body
                esm = ESM_UDHI
            pdu = Pdu(
                DELIVER_SM,
                0,
                0,
                {
                    "source_addr_ton": 1,
                    "source_addr_npi": 1,
                    "source_addr": sender,
                    "dest_addr_ton": 0,
                    "dest_addr_npi": 1,
                    "destination_addr": recipient,
                    "esm_class": esm,
                    "data_coding": dc,
                    "short_message": body,
                },
            )
            self.server.push(target, pdu)
        return total


def _preview(pdu: Pdu) -> str:
    sm: bytes = pdu.get("short_message")
    if pdu.get("esm_class") & ESM_UDHI and sm:
        sm = sm[1 + sm[0] :]
    if pdu.get("data_coding") == 8:
        return sm.decode("utf-16-be", "replace")[:20]
    return sm[:20].decode("latin-1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smsc-sim", description="SMPP 3.4 SMSC simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2775, help="0 picks a free port (printed on start)")
    p.add_argument("--system-id", default=None, help="accept only this system_id (default: any)")
    p.add_argument("--password", default=None)
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay before each submit_sm_resp")
    p.add_argument("--receipt-delay-ms", type=float, default=500.0)
    p.add_argument("--no-receipts", action="store_true")
    p.add_argument("--id-style", choices=("hex", "decimal"), default="hex")
    p.add_argument("--receipt-id-style", choices=("hex", "decimal"), default=None, help="default: same as --id-style")
    p.add_argument("--reject-rate", type=float, default=0.0, help="share refused with ESME_RSUBMITFAIL")
    p.add_argument("--undeliv-rate", type=float, default=0.0)
    p.add_argument("--expired-rate", type=float, default=0.0)
    p.add_argument("--tps", type=float, default=None, help="per-account cap (ESME_RTHROTTLED above it)")
    p.add_argument("--max-binds", type=int, default=10)
    p.add_argument("--window", type=int, default=64, help="outstanding deliver_sm per bind")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--first-id", type=int, default=None, help="the first message id (default 0x10000000 + seed)")
    p.add_argument("--clock-offset-s", type=float, default=0.0, help="receipt dates this far from our clock")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop when installed")
    p.add_argument("--log-level", default="INFO")
    return p


async def _serve(args: argparse.Namespace) -> None:
    sim = SmscSimulator(
        args.host,
        args.port,
        system_id=args.system_id,
        password=args.password,
        latency_ms=args.latency_ms,
        receipt_delay_ms=args.receipt_delay_ms,
        receipts=not args.no_receipts,
        id_style=args.id_style,
        receipt_id_style=args.receipt_id_style,
        reject_rate=args.reject_rate,
        undeliv_rate=args.undeliv_rate,
        expired_rate=args.expired_rate,
        tps=args.tps,
        max_binds=args.max_binds,
        window=args.window,
        seed=args.seed,
        first_id=args.first_id,
        clock_offset_ms=int(args.clock_offset_s * 1000),
    )
    sim.keep_submitted = False  # a long-running sim must not grow without bound
    await sim.start()
    print(f"smsc-sim listening on {args.host}:{sim.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:  # SIGHUP: count ids from --first-id again, as a restarted SMSC
        loop.add_signal_handler(signal.SIGHUP, sim.restart_ids)
    except (NotImplementedError, RuntimeError, AttributeError):
        pass
    await stop.wait()
    await sim.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.uvloop:
        try:
            import uvloop

            uvloop.run(_serve(args))
            return 0
        except ImportError:
            log.warning("uvloop not installed; using asyncio's loop")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
