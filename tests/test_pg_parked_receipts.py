"""PostgreSQL: a dispatcher taking the parked receipts of the submits it just
recorded does not queue behind another worker's sweep that holds them."""

from __future__ import annotations

import asyncpg

from tests.conftest import postgres_database
from ujumbe.store import Tx
from ujumbe.store import messages as q
from ujumbe.store.postgres import PostgresStore


async def test_taking_parked_receipts_skips_those_another_transaction_holds() -> None:
    url = await postgres_database()
    store = PostgresStore(url, min_size=1, max_size=2)
    await store.open()
    try:
        await store.run(lambda tx: q.insert_early_receipts(tx, [
            ("op-1", "smsc", "delivered", 1000, "", "", 1000, None),
            ("op-2", "smsc", "delivered", 1000, "", "", 1000, None),
        ]))
        sweep = await asyncpg.connect(url)  # another worker's sweep, holding op-1 while it matches it
        held = sweep.transaction()
        await held.start()
        await sweep.execute("SELECT 1 FROM early_receipts WHERE operator_id = 'op-1' FOR UPDATE")
        try:
            async def take(tx: Tx) -> list[dict]:  # type: ignore[type-arg]
                # waiting for the sweep would end here in an error rather than hang the test
                await tx.execute("SET LOCAL lock_timeout = '2s'")
                return await q.take_early_receipts(tx, "smsc", ["op-1", "op-2"], 0)

            taken = await store.run(take)
        finally:
            await held.rollback()
            await sweep.close()
        assert [r["operator_id"] for r in taken] == ["op-2"]
        # op-1 stays parked: the sweep that held it, or the next one, applies it
        left = await store.read(lambda tx: tx.fetch("SELECT operator_id FROM early_receipts"))
        assert [r[0] for r in left] == ["op-1"]
    finally:
        await store.close()
