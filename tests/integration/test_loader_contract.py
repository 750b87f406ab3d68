"""The loader contract (processor/ledger/state_keys.py), held against both units of work: the
in-memory fake the service's unit tests use and PostgreSQL's. The same seed goes in through the
service, the same keys are asked for, the same state must come back from each."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from processor.ledger import StateKeys
from processor.service.batch import process_batch
from processor.service.records import SourceRecord
from processor.service.unit_of_work import UnitOfWorkFactory
from processor.storage.postgres_unit_of_work import PostgresUnitOfWork
from schemas.signing import Verifier

from tests.unit.fake_unit_of_work import FakeDatabase

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(processor_database_url: str) -> Iterator[sa.Engine]:
    created = sa.create_engine(processor_database_url, pool_size=2)
    yield created
    created.dispose()


@pytest.fixture(params=["memory", "postgresql"])
def unit_of_work(request: pytest.FixtureRequest) -> UnitOfWorkFactory:
    if request.param == "memory":
        return FakeDatabase().unit_of_work
    return functools.partial(PostgresUnitOfWork, request.getfixturevalue("engine"))


def seed(unit_of_work: UnitOfWorkFactory) -> str:
    """A project with two assets, two customers (one with two wallets, one with none), a system
    wallet and a spent reference."""
    p = f"lc-{uuid.uuid4().hex[:10]}"
    requests = [
        {"type": "project.create", "project_id": p, "name": "Loader", "reference_id": "p"},
        {"type": "asset.create", "project_id": p, "asset_id": "usd", "code": "USD", "name": "Dollar", "reference_id": "a1"},
        {"type": "asset.create", "project_id": p, "asset_id": "eur", "code": "EUR", "name": "Euro", "reference_id": "a2"},
        {"type": "customer.upsert", "project_id": p, "customer_id": "c1", "reference_id": "c1"},
        {"type": "customer.upsert", "project_id": p, "customer_id": "c2", "reference_id": "c2"},
        {"type": "wallet.open", "project_id": p, "customer_id": "c1", "asset_id": "usd", "wallet_id": "A", "reference_id": "wa"},
        {"type": "wallet.open", "project_id": p, "customer_id": "c1", "asset_id": "eur", "wallet_id": "B", "reference_id": "wb"},
        {"type": "system_wallet.open", "project_id": p, "asset_id": "usd", "wallet_id": "S", "reference_id": "ws"},
        {"type": "transaction.run", "project_id": p, "reference_id": "fund", "operations": [{"type": "Issue", "wallet_id": "A", "amount": "12.5"}]},
    ]
    records = [SourceRecord(topic=f"seed-{p}", partition=0, offset=i, key=None, value=json.dumps(r).encode()) for i, r in enumerate(requests)]
    report = process_batch(unit_of_work=unit_of_work, records=records, consumer_group="lc", max_request_bytes=1 << 20, verifier=Verifier(master=None, required=False))
    assert [r.result.status.value for r in report.replies] == ["Completed"] * len(requests), [r.result.error for r in report.replies]
    return p


def keys(p: str, *, wallet_owners: bool) -> StateKeys:
    return StateKeys(
        project_ids=(p, "no-such-project"),
        asset_keys=((p, "usd"), (p, "zzz")),
        customer_keys=((p, "c2"),),
        wallet_keys=((p, "S"), (p, "missing")),
        reference_keys=((p, "fund"), (p, "unspent")),
        customers_with_wallets=((p, "c1"), (p, "c2"), (p, "nobody")),
        locked_project_ids=(),
        locked_asset_keys=(),
        locked_customer_keys=(),
        wallet_owners=wallet_owners,
    )


@pytest.mark.parametrize("wallet_owners", [True, False])
def test_both_units_of_work_load_what_the_contract_says(unit_of_work: UnitOfWorkFactory, wallet_owners: bool) -> None:
    p = seed(unit_of_work)
    with unit_of_work() as uow:
        state = uow.load_state(keys(p, wallet_owners=wallet_owners))
    assert set(state.projects) == {p}  # rule 1: the existing ones only
    assert set(state.assets) == {(p, "usd"), (p, "eur")}  # rule 2: asked for, and every loaded wallet's (B's eur)
    owners = {(p, "c1")} if wallet_owners else set()
    assert set(state.customers) == {(p, "c2")} | owners  # rule 3: asked for, and the owners when asked
    assert set(state.wallets) == {(p, "S"), (p, "A"), (p, "B")}  # rule 4: asked for, and every wallet of c1/c2
    assert {k: sorted(v) for k, v in state.customer_wallets.items()} == {(p, "c1"): [(p, "A"), (p, "B")], (p, "c2"): [], (p, "nobody"): []}  # rule 5
    assert set(state.references) == {(p, "fund")} and state.references[(p, "fund")].status.value == "Completed"  # rule 6
    assert state.wallets[(p, "A")].balance == 1250 and state.assets[(p, "usd")].fractions == 100
    assert uow.reference_sources[(p, "fund")] == (f"seed-{p}", 0, 8)  # who spent it


def test_both_units_of_work_load_a_named_transaction_and_its_wallets(unit_of_work: UnitOfWorkFactory) -> None:
    """Rule 7: a reversal's wallets are its original's, which its request does not name."""
    p = seed(unit_of_work)
    with unit_of_work() as uow:
        fund = uow.load_state(keys(p, wallet_owners=False)).references[(p, "fund")]
    assert fund.transaction is not None
    named = fund.transaction.transaction_id
    only = StateKeys(
        project_ids=(p,), asset_keys=(), customer_keys=(), wallet_keys=(), reference_keys=(), customers_with_wallets=(),
        locked_project_ids=(), locked_asset_keys=(), locked_customer_keys=(), wallet_owners=False,
        transaction_keys=((p, named), (p, "00000000-0000-5000-8000-000000000000")),
    )
    with unit_of_work() as uow:
        state = uow.load_state(only)
    assert set(state.transactions) == {(p, named)}
    loaded = state.transactions[(p, named)]
    assert (loaded.status.value, loaded.reverses, loaded.reversed_by) == ("Completed", None, None)
    assert [op.type for op in loaded.operations] == ["Issue"]
    assert set(state.wallets) == {(p, "A")} and set(state.assets) == {(p, "usd")}  # its wallet, and that wallet's asset


def test_both_units_of_work_load_named_holds_their_wallets_and_the_active_holds_of_holding_wallets(unit_of_work: UnitOfWorkFactory) -> None:
    """Rule 8: a Capture's wallets are its hold's; every Active hold of a loaded wallet with
    held > 0 comes too (the engine expires them), finished ones only when named."""
    p = seed(unit_of_work)
    holds = [
        {"type": "hold.create", "project_id": p, "reference_id": "h1", "hold_id": "h1", "wallet_id": "A", "to_wallet_id": "S", "amount": "2"},
        {"type": "hold.create", "project_id": p, "reference_id": "h2", "hold_id": "h2", "wallet_id": "A", "amount": "3", "expires_at": "2999-01-01T00:00:00Z"},
        {"type": "hold.create", "project_id": p, "reference_id": "h3", "hold_id": "h3", "wallet_id": "A", "amount": "1"},
        {"type": "hold.void", "project_id": p, "reference_id": "v3", "hold_id": "h3"},
    ]
    records = [SourceRecord(topic=f"holds-{p}", partition=0, offset=i, key=None, value=json.dumps(r).encode()) for i, r in enumerate(holds)]
    report = process_batch(unit_of_work=unit_of_work, records=records, consumer_group="lc", max_request_bytes=1 << 20, verifier=Verifier(master=None, required=False))
    assert [r.result.status.value for r in report.replies] == ["Completed"] * len(holds), [r.result.error for r in report.replies]
    none = dict(project_ids=(p,), asset_keys=(), customer_keys=(), reference_keys=(), customers_with_wallets=(), locked_project_ids=(), locked_asset_keys=(), locked_customer_keys=(), wallet_owners=False)
    with unit_of_work() as uow:
        by_name = uow.load_state(StateKeys(**none, wallet_keys=(), hold_keys=((p, "h1"), (p, "h3"), (p, "nope"))))  # type: ignore[arg-type]
    assert set(by_name.wallets) == {(p, "A"), (p, "S")}  # h1's wallet and destination (h3's is A too)
    assert set(by_name.holds) == {(p, "h1"), (p, "h2"), (p, "h3")}  # named (any status), and A's Active h2
    assert by_name.holds[(p, "h3")].status.value == "Voided" and by_name.holds[(p, "h2")].amount == 300
    assert (by_name.wallets[(p, "A")].balance, by_name.wallets[(p, "A")].held) == (1250, 500)
    with unit_of_work() as uow:
        by_wallet = uow.load_state(StateKeys(**none, wallet_keys=((p, "A"),)))  # type: ignore[arg-type]
    assert set(by_wallet.holds) == {(p, "h1"), (p, "h2")}  # the Active ones only
    with unit_of_work() as uow:
        idle = uow.load_state(StateKeys(**none, wallet_keys=((p, "S"),)))  # type: ignore[arg-type]
    assert idle.holds == {}  # S holds nothing: no hold is read for it
