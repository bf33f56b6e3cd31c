"""The built-in operator simulator: a carrier in a box for the embedded default.

It accepts every message, gives each part an operator id, and reports
delivery after a random delay, like a real SMSC. Some destination numbers
produce each failure outcome, so clients can test their error handling:

| number ends in | outcome |
|---|---|
| ...0001 | rejected at submit (permanent error, never reaches the operator) |
| ...0002 | receipt UNDELIV, reason absent_subscriber |
| ...0003 | receipt EXPIRED |
| ...0004 | throttled twice (transient), then delivered |
| ...0005 | accepted but no receipt ever (Ujumbe expires it after the validity period) |
| ...0006 | receipt REJECTD, reason blacklisted |
| ...0007 | first part delivered, later parts undelivered (multi-part messages) |
| anything else | receipt DELIVRD |

``inject_inbound`` hands Ujumbe a message as if a subscriber had sent it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time

from ujumbe.channels.base import Channel, Inbound, Outbound, Receipt, SendError, Submitted
from ujumbe.core.states import State

OUTCOMES = {
    "0002": (State.UNDELIVERED, "absent_subscriber", "UNDELIV"),
    "0003": (State.EXPIRED, "", "EXPIRED"),
    "0006": (State.REJECTED, "blacklisted", "REJECTD"),
}


class Simulator(Channel):
    name = "simulator"
    kind = "sms"
    max_in_flight = 1000

    def __init__(
        self, *, receipt_delay_ms: tuple[int, int] = (500, 3000), submit_latency_ms: int = 0,
        name: str = "simulator",
    ) -> None:
        super().__init__()
        self.name = name
        self.receipt_delay_ms = receipt_delay_ms
        self.submit_latency_ms = submit_latency_ms
        self._ids = itertools.count(int(time.time() * 1000) % 10**10 * 1000)
        self._throttled: dict[str, int] = {}
        self._stopped = False
        self.sent: list[Outbound] = []  # what reached the "operator", for tests and demos

    async def _send(self, msg: Outbound) -> Submitted:
        if self.submit_latency_ms:
            await asyncio.sleep(self.submit_latency_ms / 1000)
        tail = msg.recipient[-4:]
        if tail == "0001":
            raise SendError("operator rejected the destination", transient=False, code="0x0000000B", state=State.REJECTED)
        if tail == "0004":
            seen = self._throttled.get(msg.message_id, 0)
            if seen < 2:
                self._throttled[msg.message_id] = seen + 1
                raise SendError("throttled by operator", transient=True, code="0x00000058")
        ids = [format(next(self._ids), "x") for _ in range(max(msg.parts, 1))]
        self.sent.append(msg)
        if len(self.sent) > 10_000:
            del self.sent[:5_000]
        if msg.want_receipt:
            for n, op_id in enumerate(ids):
                self._schedule(op_id, msg.recipient, first=n == 0)
        return Submitted(ids)

    def _schedule(self, op_id: str, recipient: str, *, first: bool = True) -> None:
        tail = recipient[-4:]
        if tail == "0005":
            return
        state, reason, stat = OUTCOMES.get(tail, (State.DELIVERED, "", "DELIVRD"))
        if tail == "0007" and not first:
            state, reason, stat = State.UNDELIVERED, "absent_subscriber", "UNDELIV"
        low, high = self.receipt_delay_ms
        asyncio.get_running_loop().call_later(random.uniform(low, high) / 1000, self._report, op_id, state, reason, stat)

    def replay(self, op_id: str, recipient: str) -> None:
        """Report a part submitted before a restart, as an SMSC does on rebind."""
        self._schedule(op_id, recipient, first=True)

    def _report(self, op_id: str, state: State, reason: str, stat: str) -> None:
        if self.events is None or self._stopped:
            return
        receipt = Receipt(
            self.name, op_id, state, int(time.time() * 1000), "" if state == State.DELIVERED else "001", reason,
            f"stat:{stat}",
        )
        asyncio.ensure_future(self.events.receipt(receipt))

    async def inject_inbound(
        self, sender: str, recipient: str, body: str, *, network: str | None = None, link_id: str | None = None,
    ) -> None:
        if self.events is None:
            raise RuntimeError("the simulator is not started")
        await self.events.inbound(
            Inbound(self.name, sender, recipient, body, int(time.time() * 1000), network=network,
                    link_id=link_id or str(random.randrange(10**17, 10**18)))
        )

    async def stop(self) -> None:
        # Receipts still due are lost with the "carrier", as they would be with
        # a real one; the messages stay submitted and expire if never reported.
        self._stopped = True
