"""Balances are exact at any size the contract allows (up to 10**38 - 1 minor units): a balance
must never pass through a float on its way from PostgreSQL to the engine and back."""

from __future__ import annotations

import functools

import json
import uuid

import pytest
import sqlalchemy as sa

from processor.storage.postgres_unit_of_work import PostgresUnitOfWork
from processor.service.batch import process_batch
from schemas.signing import Verifier

from processor.storage.audit import audit_ledger
from processor.service.records import SourceRecord

pytestmark = pytest.mark.integration
UNSIGNED = Verifier(master=None, required=False)  # signatures: tests/e2e/test_security.py, test_replays.py


def test_balances_beyond_float_precision_stay_exact(processor_database_url: str) -> None:
    engine = sa.create_engine(processor_database_url)
    project = f"big-{uuid.uuid4().hex[:10]}"
    # fractions 10**18: 10**19 + 1 minor units is 10.000000000000000001 units; a float cannot hold it.
    big = "10.000000000000000001"
    requests = [
        {"type": "project.create", "project_id": project, "name": "Big", "reference_id": "p"},
        {"type": "asset.create", "project_id": project, "asset_id": "eth", "code": "ETH", "name": "Ether", "fractions": 10**18, "reference_id": "a"},
        {"type": "system_wallet.open", "project_id": project, "asset_id": "eth", "wallet_id": "A", "reference_id": "wa"},
        {"type": "system_wallet.open", "project_id": project, "asset_id": "eth", "wallet_id": "B", "reference_id": "wb"},
        {"type": "transaction.run", "project_id": project, "reference_id": "fund", "operations": [{"type": "Issue", "wallet_id": "A", "amount": big}]},
    ]
    later = [  # a later batch loads A from the database, then moves one minor unit
        {"type": "transaction.run", "project_id": project, "reference_id": "move", "operations": [
            {"type": "Transfer", "from_wallet_id": "A", "to_wallet_id": "B", "amount": "0.000000000000000001"}]},
    ]
    try:
        for offset, batch in ((0, requests), (100, later)):
            records = [SourceRecord(topic="big", partition=0, offset=offset + i, key=None, value=json.dumps(r).encode()) for i, r in enumerate(batch)]
            report = process_batch(unit_of_work=functools.partial(PostgresUnitOfWork, engine), records=records, consumer_group="big", max_request_bytes=1 << 20, verifier=UNSIGNED)
            assert all(reply.result.status.value == "Completed" for reply in report.replies), [r.result for r in report.replies]
        entries = report.replies[-1].result.transaction.entries
        assert [(e.wallet_id, e.balance_after) for e in entries] == [("A", "10.000000000000000000"), ("B", "0.000000000000000001")]
        with engine.connect() as c:
            balances = dict(c.execute(sa.text("SELECT wallet_id, balance::text FROM wallets WHERE project_id = :p"), {"p": project}).all())
        assert balances == {"A": str(10**19), "B": "1"}
        assert audit_ledger(engine, project_id=project).ok
    finally:
        engine.dispose()
