"""Storage on real PostgreSQL: the database guards the invariants, the unit of work loads, locks
and writes what the engine needs, and concurrent batches neither deadlock nor lose updates."""

from __future__ import annotations

import functools

import json
import threading
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from processor.ledger.state_keys import state_keys
from processor.service.batch import process_batch
from schemas.signing import Verifier

from processor.storage.audit import audit_ledger
from processor.storage.postgres_unit_of_work import PostgresUnitOfWork
from processor.service.records import SourceRecord
from schemas.requests import RequestAdapter

pytestmark = pytest.mark.integration
UNSIGNED = Verifier(master=None, required=False)  # signatures: tests/e2e/test_security.py, test_replays.py

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine(processor_database_url: str):
    created = sa.create_engine(processor_database_url, pool_size=8)
    yield created
    created.dispose()


def records(requests: list[dict], *, partition: int = 0, start: int = 0, topic: str | None = None) -> list[SourceRecord]:
    # Each call's records are new ones (a topic of their own) unless a test names the topic:
    # records at positions PostgreSQL has stored as processed are replays, never applied again.
    topic = topic or f"storage-test-{uuid.uuid4().hex[:8]}"
    return [
        SourceRecord(topic=topic, partition=partition, offset=start + i, key=None, value=json.dumps(r).encode())
        for i, r in enumerate(requests)
    ]


def apply(engine: sa.Engine, requests: list[dict], **where) -> list:
    report = process_batch(unit_of_work=functools.partial(PostgresUnitOfWork, engine), records=records(requests, **where), consumer_group="storage-test", max_request_bytes=1 << 20, verifier=UNSIGNED)
    return [reply.result for reply in report.replies]


@pytest.fixture
def project(engine: sa.Engine) -> str:
    project_id = f"st-{uuid.uuid4().hex[:10]}"
    results = apply(
        engine,
        [
            {"type": "project.create", "project_id": project_id, "name": "Storage", "reference_id": "p"},
            {"type": "asset.create", "project_id": project_id, "asset_id": "usd", "code": "USD", "name": "Dollar", "reference_id": "a"},
            {"type": "customer.upsert", "project_id": project_id, "customer_id": "c1", "reference_id": "c"},
            {"type": "wallet.open", "project_id": project_id, "customer_id": "c1", "asset_id": "usd", "wallet_id": "A", "reference_id": "wa"},
            {"type": "wallet.open", "project_id": project_id, "customer_id": "c1", "asset_id": "usd", "wallet_id": "B", "reference_id": "wb"},
            {"type": "transaction.run", "project_id": project_id, "reference_id": "fund", "operations": [
                {"type": "Issue", "wallet_id": "A", "amount": "1000"}, {"type": "Issue", "wallet_id": "B", "amount": "1000"}]},
        ],
        topic=f"setup-{project_id}",
    )
    assert all(r.status.value == "Completed" for r in results), results
    return project_id


# ------------------------------------------------------------------------ database constraints


@pytest.mark.parametrize(
    ("statement", "violation"),
    [
        ("UPDATE wallets SET balance = -1 WHERE project_id = :p AND wallet_id = 'A'", "ck_wallets_balance_not_negative"),
        ("UPDATE wallets SET status = 'Closed' WHERE project_id = :p AND wallet_id = 'A'", "ck_wallets_closed_is_empty"),
        ("UPDATE wallets SET status = 'Frozen' WHERE project_id = :p AND wallet_id = 'A'", "ck_wallets_status_known"),
        ("UPDATE wallet_entries SET amount = amount + 1 WHERE project_id = :p", "append-only"),
        ("DELETE FROM wallet_entries WHERE project_id = :p", "append-only"),
        ("TRUNCATE wallet_entries CASCADE", "append-only"),
        ("INSERT INTO wallets (project_id, wallet_id, asset_id, status, balance, created_at, updated_at) "
         "VALUES (:p, 'X', 'no-such-asset', 'Open', 0, now(), now())", "fk_wallets_project_id_asset_id_assets"),
        ("INSERT INTO processed_requests (project_id, reference_id, request_type, result, created_at) "
         "VALUES (:p, 'fund', 'transaction.run', '{}', now())", "pk_processed_requests"),
        ("INSERT INTO transactions (project_id, transaction_id, reference_id, status, operations, created_at) "
         "VALUES (:p, 'tx-dup', 'fund', 'Completed', '[]', now())", "uq_transactions_project_id_reference_id"),
        ("INSERT INTO transactions (project_id, transaction_id, reference_id, status, operations, created_at) "
         "VALUES (:p, 'tx-x', 'x', 'Failed', '[]', now())", "ck_transactions_failed_has_error"),
        ("INSERT INTO wallet_entries (project_id, wallet_id, transaction_id, operation_index, entry_type, amount, balance_after, created_at) "
         "SELECT :p, 'A', transaction_id, 9, 'Issue', 0, 1, now() FROM transactions WHERE project_id = :p LIMIT 1", "ck_wallet_entries_amount_positive"),
        ("INSERT INTO wallet_entries (project_id, wallet_id, transaction_id, operation_index, entry_type, amount, balance_after, created_at) "
         "SELECT :p, 'A', transaction_id, 9, 'Debit', 1, -1, now() FROM transactions WHERE project_id = :p LIMIT 1", "ck_wallet_entries_balance_after_not_negative"),
        ("UPDATE assets SET fractions = 3 WHERE project_id = :p", "ck_assets_fractions_power_of_ten"),
    ],
)
def test_the_database_refuses_what_the_engine_must_never_produce(database_url, project, statement, violation):
    """The constraints and the append-only trigger hold even for the owner (the processor's
    role is refused most of these by its grants already: tests/integration/test_security.py)."""
    owner = sa.create_engine(database_url)
    with pytest.raises(sa.exc.DBAPIError) as refused:
        with owner.begin() as connection:
            connection.execute(sa.text(statement), {"p": project})
    owner.dispose()
    assert violation in str(refused.value)


def test_the_audit_finds_history_whose_parent_is_missing(database_url, project):
    """The history tables have no foreign keys (migration 0007): the audit is what proves the
    batch wrote every parent. Orphans made here are rolled back, never left for other tests."""
    from processor.storage.audit import ORPHANS

    owner = sa.create_engine(database_url)
    ghost = f"{project}-ghost"
    with owner.connect() as connection, connection.begin() as transaction:
        connection.execute(sa.text(
            "INSERT INTO transactions (project_id, transaction_id, reference_id, status, operations, created_at) "
            "VALUES (:g, 'tx-ghost', 'ghost', 'Completed', '[]', now())"), {"g": ghost})
        connection.execute(sa.text(
            "INSERT INTO processed_requests (project_id, reference_id, request_type, result, created_at) "
            "VALUES (:g, 'ghost', 'transaction.run', '{}', now())"), {"g": ghost})
        connection.execute(sa.text(
            "INSERT INTO wallet_entries (project_id, wallet_id, transaction_id, operation_index, entry_type, amount, balance_after, created_at) "
            "VALUES (:p, 'no-such-wallet', 'no-such-transaction', 0, 'Issue', 1, 1, now())"), {"p": project})
        found = sorted(row[0] for row in connection.execute(ORPHANS, {"project_id": None}) if row[1] in (project, ghost))
        transaction.rollback()
    owner.dispose()
    assert found == ["entry without transaction", "entry without wallet", "reference without project", "transaction without project"]


# ------------------------------------------------------------------------ unit of work


def test_load_state_loads_and_locks_what_the_keys_ask_for(engine, project):
    requests = [
        RequestAdapter.validate_python(r)
        for r in (
            {"type": "customer.suspend", "project_id": project, "customer_id": "c1", "reference_id": "s"},
            {"type": "transaction.run", "project_id": project, "reference_id": "fund", "operations": [{"type": "Issue", "wallet_id": "A", "amount": "1"}]},
        )
    ]
    with PostgresUnitOfWork(engine) as uow:
        state = uow.load_state(state_keys(requests))
        locked = uow.connection.execute(
            sa.text(
                "SELECT relation::regclass::text, mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation' "
                "AND relation::regclass::text IN ('wallets', 'customers')"
            )
        ).all()
    assert set(state.wallets) == {(project, "A"), (project, "B")}
    assert sorted(state.customer_wallets[(project, "c1")]) == [(project, "A"), (project, "B")]
    assert state.wallets[(project, "A")].balance == 100000
    assert set(state.assets) == {(project, "usd")}
    assert (project, "fund") in state.references and state.references[(project, "fund")].status.value == "Completed"
    assert uow.reference_sources[(project, "fund")] == (f"setup-{project}", 0, 5)
    assert ("wallets", "RowShareLock") in locked and ("customers", "RowShareLock") in locked, locked


def test_stored_offsets_never_move_back(engine):
    group = f"g-{uuid.uuid4().hex[:6]}"
    with PostgresUnitOfWork(engine) as uow:
        uow.store_offsets(consumer_group=group, offsets={("t", 0): 50, ("t", 1): 7}, now=NOW)
        uow.commit()
    with PostgresUnitOfWork(engine) as uow:
        uow.store_offsets(consumer_group=group, offsets={("t", 0): 10, ("t", 1): 9}, now=NOW)
        uow.commit()
    with PostgresUnitOfWork(engine) as uow:
        assert uow.load_offsets(consumer_group=group, topic="t") == {0: 50, 1: 9}


def test_a_batch_that_fails_commits_nothing(engine, project):
    before = audit_ledger(engine, project_id=project)
    with pytest.raises(RuntimeError):
        with PostgresUnitOfWork(engine) as uow:
            uow.store_offsets(consumer_group="rollback", offsets={("t", 0): 1}, now=NOW)
            raise RuntimeError("crash before commit")
    with PostgresUnitOfWork(engine) as uow:
        assert uow.load_offsets(consumer_group="rollback", topic="t") == {}
    assert before.ok


def test_redelivered_record_is_answered_with_its_stored_result_and_others_as_duplicates(engine, project):
    request = {"type": "transaction.run", "project_id": project, "reference_id": "once", "operations": [
        {"type": "Transfer", "from_wallet_id": "A", "to_wallet_id": "B", "amount": "5"}]}
    first = apply(engine, [request], partition=3, start=100, topic=f"replay-{project}")
    replay = apply(engine, [request], partition=3, start=100, topic=f"replay-{project}")  # the very same record again
    other = apply(engine, [request], partition=1, start=7)  # the same reference, another record
    assert first[0].status.value == "Completed"
    assert replay[0] == first[0]
    assert other[0].error.code.value == "DuplicateReferenceId" and other[0].original == first[0]
    with engine.connect() as connection:
        balances = dict(connection.execute(sa.text("SELECT wallet_id, balance FROM wallets WHERE project_id = :p"), {"p": project}).all())
    assert balances == {"A": 99500, "B": 100500}


# ------------------------------------------------------------------------ concurrency


def test_concurrent_batches_in_opposite_directions_neither_deadlock_nor_lose_updates(engine, project):
    """Two processors move money A->B and B->A at once; sorted locks keep them from deadlocking."""
    rounds = 15
    errors: list[BaseException] = []

    def worker(name: str, source: str, target: str, partition: int) -> None:
        try:
            for i in range(rounds):
                batch = [
                    {"type": "transaction.run", "project_id": project, "reference_id": f"{name}-{i}-{j}", "operations": [
                        {"type": "Transfer", "from_wallet_id": source, "to_wallet_id": target, "amount": "1"}]}
                    for j in range(10)
                ]
                results = apply(engine, batch, partition=partition, start=i * 10)
                assert all(r.status.value == "Completed" for r in results)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [
        threading.Thread(target=worker, args=("ab", "A", "B", 10)),
        threading.Thread(target=worker, args=("ba", "B", "A", 11)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    with engine.connect() as connection:
        balances = dict(connection.execute(sa.text("SELECT wallet_id, balance FROM wallets WHERE project_id = :p"), {"p": project}).all())
    assert balances == {"A": 100000, "B": 100000}, "same number of transfers each way"
    assert audit_ledger(engine, project_id=project).ok


def test_the_same_reference_in_two_concurrent_batches_is_applied_once(engine, project):
    barrier = threading.Barrier(2)
    outcomes: list = []

    def worker(partition: int) -> None:
        barrier.wait()
        outcomes.extend(apply(engine, [{"type": "transaction.run", "project_id": project, "reference_id": "contested", "operations": [
            {"type": "Redeem", "wallet_id": "A", "amount": "3"}]}], partition=partition, start=0))

    threads = [threading.Thread(target=worker, args=(p,)) for p in (20, 21)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    codes = sorted(r.error.code.value if r.error else "Completed" for r in outcomes)
    assert codes == ["Completed", "DuplicateReferenceId"]
    with engine.connect() as connection:
        balance = connection.execute(sa.text("SELECT balance FROM wallets WHERE project_id = :p AND wallet_id = 'A'"), {"p": project}).scalar_one()
    assert balance == 99700


def test_a_record_the_database_refuses_fails_alone(engine, database_url, project):
    """A poison record (here: one a test-only CHECK refuses) fails with InternalError; the rest of
    its batch is applied and nothing blocks."""
    owner = sa.create_engine(database_url)  # only the owner may alter a table
    with owner.begin() as connection:
        connection.execute(sa.text("ALTER TABLE wallets ADD CONSTRAINT test_poison_name CHECK (name IS DISTINCT FROM 'poison')"))
    try:
        results = apply(
            engine,
            [
                {"type": "system_wallet.open", "project_id": project, "asset_id": "usd", "wallet_id": "good-1", "reference_id": "g1"},
                {"type": "system_wallet.open", "project_id": project, "asset_id": "usd", "wallet_id": "bad", "name": "poison", "reference_id": "bad"},
                {"type": "system_wallet.open", "project_id": project, "asset_id": "usd", "wallet_id": "good-2", "reference_id": "g2"},
            ],
            partition=30,
        )
    finally:
        with owner.begin() as connection:
            connection.execute(sa.text("ALTER TABLE wallets DROP CONSTRAINT test_poison_name"))
        owner.dispose()
    assert [r.error.code.value if r.error else "Completed" for r in results] == ["Completed", "InternalError", "Completed"]
    with engine.connect() as connection:
        wallets = set(connection.execute(sa.text("SELECT wallet_id FROM wallets WHERE project_id = :p"), {"p": project}).scalars())
        spent = set(connection.execute(sa.text("SELECT reference_id FROM processed_requests WHERE project_id = :p"), {"p": project}).scalars())
    assert {"good-1", "good-2"} <= wallets and "bad" not in wallets
    assert {"g1", "g2"} <= spent and "bad" not in spent, "the refused request did not spend its reference"


def test_models_match_the_migrations(database_url):
    """Alembic finds nothing to change: the tables in models.py are what the migrations create."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from processor.storage.tables import metadata

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    finally:
        engine.dispose()


# ------------------------------------------------------------------------ reversals


def test_two_concurrent_reversals_of_one_transaction_apply_once(engine, project):
    """Different references, the same original: the partial unique index on Completed reversals
    makes the two batches collide; the loser runs again and answers TransactionAlreadyReversed."""
    [paid] = apply(engine, [{"type": "transaction.run", "project_id": project, "reference_id": "pay", "operations": [
        {"type": "Transfer", "from_wallet_id": "A", "to_wallet_id": "B", "amount": "7"}]}])
    original = paid.transaction.transaction_id
    barrier = threading.Barrier(2)
    outcomes: list = []

    def worker(reference: str) -> None:
        barrier.wait()
        outcomes.extend(apply(engine, [{"type": "transaction.reverse", "project_id": project, "reference_id": reference, "transaction_id": original}]))

    threads = [threading.Thread(target=worker, args=(f"undo-{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    codes = sorted(r.error.code.value if r.error else "Completed" for r in outcomes)
    assert codes == ["Completed", "TransactionAlreadyReversed"], [r.error for r in outcomes]
    with engine.connect() as connection:
        balances = dict(connection.execute(sa.text("SELECT wallet_id, balance FROM wallets WHERE project_id = :p"), {"p": project}).all())
        reversals = connection.execute(
            sa.text("SELECT count(*) FROM transactions WHERE project_id = :p AND reverses = :t AND status = 'Completed'"), {"p": project, "t": original}
        ).scalar_one()
    assert (balances["A"], balances["B"], reversals) == (100000, 100000, 1)
    assert audit_ledger(engine, project_id=project).ok


def test_the_audit_finds_a_reversal_that_does_not_mirror_its_original(engine, database_url, project):
    from processor.storage.audit import REVERSAL_MISMATCHES

    [paid] = apply(engine, [{"type": "transaction.run", "project_id": project, "reference_id": "pay", "operations": [
        {"type": "Transfer", "from_wallet_id": "A", "to_wallet_id": "B", "amount": "2"}]}])
    [undone] = apply(engine, [{"type": "transaction.reverse", "project_id": project, "reference_id": "undo", "transaction_id": paid.transaction.transaction_id}])
    assert undone.status.value == "Completed" and audit_ledger(engine, project_id=project).ok
    owner = sa.create_engine(database_url)
    with owner.connect() as connection, connection.begin() as transaction:
        # A Completed "reversal" of the funding with no entries at all: it mirrors nothing.
        connection.execute(sa.text(
            "INSERT INTO transactions (project_id, transaction_id, reference_id, status, operations, created_at, reverses) "
            "SELECT :p, 'tx-fake-reversal', 'fake', 'Completed', '[]', now(), transaction_id FROM transactions "
            "WHERE project_id = :p AND reference_id = 'fund'"), {"p": project})
        found = [row[1] for row in connection.execute(REVERSAL_MISMATCHES, {"project_id": project})]
        transaction.rollback()
    owner.dispose()
    assert found == ["tx-fake-reversal"]


# ------------------------------------------------------------------------------------- holds


def test_holds_on_postgresql_reserve_capture_and_expire_by_log_time(engine, project):
    """A hold's whole life on real PostgreSQL: the log time of each record decides its expiry."""
    topic = f"holds-{project}"
    hold = {"type": "hold.create", "project_id": project, "reference_id": "h", "hold_id": "h1", "wallet_id": "A", "to_wallet_id": "B",
            "amount": "600", "expires_at": "2030-01-01T00:00:00Z"}
    short = {"type": "hold.create", "project_id": project, "reference_id": "s", "hold_id": "h2", "wallet_id": "A", "amount": "300",
             "expires_at": "2030-01-01T00:00:00Z"}
    spend = {"type": "transaction.run", "project_id": project, "reference_id": "spend", "operations": [{"type": "Redeem", "wallet_id": "A", "amount": "200"}]}
    before = datetime(2029, 12, 31, tzinfo=UTC)
    stamped = [SourceRecord(topic=topic, partition=0, offset=i, key=None, value=json.dumps(r).encode(), log_time=before) for i, r in enumerate((hold, short, spend))]
    report = process_batch(unit_of_work=functools.partial(PostgresUnitOfWork, engine), records=stamped, consumer_group="storage-test", max_request_bytes=1 << 20, verifier=UNSIGNED)
    created, second, refused = (reply.result for reply in report.replies)
    assert (created.status.value, second.status.value) == ("Completed", "Completed")
    assert refused.error.code == "InsufficientFunds"  # 1000 - 900 held: 100 available
    assert audit_ledger(engine, project_id=project).ok
    [captured] = apply(engine, [{"type": "hold.capture", "project_id": project, "reference_id": "cap", "hold_id": "h1", "amount": "250"}], topic=topic, start=3)
    assert captured.hold.status == "Captured" and captured.hold.captured == "250.00"
    after = datetime(2030, 1, 1, tzinfo=UTC)  # h2's expiry, reached by the next record's log time
    again = SourceRecord(topic=topic, partition=0, offset=4, key=None, value=json.dumps({**spend, "reference_id": "spend-2"}).encode(), log_time=after)
    [spent] = [r.result for r in process_batch(unit_of_work=functools.partial(PostgresUnitOfWork, engine), records=[again], consumer_group="storage-test", max_request_bytes=1 << 20, verifier=UNSIGNED).replies]
    assert spent.status.value == "Completed", spent.error
    with engine.connect() as connection:
        wallet = connection.execute(sa.text("SELECT balance, held FROM wallets WHERE project_id = :p AND wallet_id = 'A'"), {"p": project}).one()
        statuses = dict(connection.execute(sa.text("SELECT hold_id, status FROM holds WHERE project_id = :p"), {"p": project}).all())
        kinds = [row[0] for row in connection.execute(sa.text("SELECT entry_type FROM wallet_entries WHERE project_id = :p AND wallet_id = 'A' ORDER BY entry_id"), {"p": project})]
    assert (int(wallet.balance), int(wallet.held)) == ((1000 - 250 - 200) * 100, 0) and statuses == {"h1": "Captured", "h2": "Expired"}
    assert kinds == ["Issue", "Hold", "Hold", "Release", "Debit", "Release", "Redeem"]
    assert audit_ledger(engine, project_id=project).ok


def test_the_audit_finds_held_amounts_that_do_not_match_the_holds(engine, database_url, project):
    from processor.storage.audit import HOLD_MISMATCHES

    [made] = apply(engine, [{"type": "hold.create", "project_id": project, "reference_id": "h", "hold_id": "h1", "wallet_id": "A", "amount": "5"}])
    assert made.status.value == "Completed" and audit_ledger(engine, project_id=project).ok
    owner = sa.create_engine(database_url)
    with owner.connect() as connection, connection.begin() as transaction:
        connection.execute(sa.text("UPDATE holds SET status = 'Voided', finished_by = 'nobody' WHERE project_id = :p"), {"p": project})
        found = [row[1] for row in connection.execute(HOLD_MISMATCHES, {"project_id": project})]
        transaction.rollback()
    owner.dispose()
    assert found == ["A"]  # held 5, but no Active hold and no Release entry says why


# ------------------------------------------------------------------------------------- metadata


def test_metadata_is_stored_read_back_and_filtered_by(engine, roles, project):
    """Written by every path (COPY, the upserts, the full wallet upsert), loaded into the state,
    read by the gateway's reads (its own role: the table grants cover the new column)."""
    from processor.gateway.reads import MetadataFilter, Paging, Period, Reads
    from processor.ledger.state import NO_METADATA

    # What COPY's text format and JSON must both escape: quotes, a backslash, a tab; and non-ASCII.
    order = {"order": "123", "note": 'a "quoted" \\ back\tslash, ü 😀'}
    done = apply(engine, [
        {"type": "customer.upsert", "project_id": project, "customer_id": "c2", "reference_id": "c2", "metadata": {"crm": "7"}},
        {"type": "wallet.open", "project_id": project, "customer_id": "c2", "asset_id": "usd", "wallet_id": "C", "reference_id": "wc", "metadata": {"tier": "gold", "q": '"\\'}},
        {"type": "transaction.run", "project_id": project, "reference_id": "paid", "metadata": order, "operations": [
            {"type": "Transfer", "from_wallet_id": "A", "to_wallet_id": "B", "amount": "5"}]},
        {"type": "transaction.run", "project_id": project, "reference_id": "other", "metadata": {"order": "124"}, "operations": [
            {"type": "Transfer", "from_wallet_id": "A", "to_wallet_id": "C", "amount": "1"}]},
        {"type": "hold.create", "project_id": project, "reference_id": "held", "hold_id": "h1", "wallet_id": "A", "amount": "2", "metadata": order},
    ])
    assert all(r.status.value == "Completed" for r in done), [r.error for r in done]
    with engine.connect() as connection:
        stored = dict(connection.execute(sa.text("SELECT reference_id, metadata FROM transactions WHERE project_id = :p"), {"p": project}).all())
    assert stored == {"fund": {}, "paid": order, "other": {"order": "124"}, "held": order}

    keys = state_keys([RequestAdapter.validate_python(r) for r in (
        {"type": "customer.suspend", "project_id": project, "customer_id": "c2", "reference_id": "s"},
        {"type": "hold.void", "project_id": project, "hold_id": "h1", "reference_id": "v"},
    )])
    with PostgresUnitOfWork(engine) as uow:
        state = uow.load_state(keys)
    assert state.customers[(project, "c2")].metadata == {"crm": "7"} and state.wallets[(project, "C")].metadata == {"tier": "gold", "q": '"\\'}
    assert state.holds[(project, "h1")].metadata == order
    assert state.wallets[(project, "A")].metadata is NO_METADATA  # '{}' is read as NULL: nothing parsed, one shared dict

    # A balance-only change (UPDATE_BALANCES) keeps it; a rename replaces it whole or keeps it; so does an upsert.
    changed = apply(engine, [
        {"type": "transaction.run", "project_id": project, "reference_id": "topup", "operations": [{"type": "Issue", "wallet_id": "C", "amount": "3"}]},
        {"type": "wallet.rename", "project_id": project, "wallet_id": "B", "reference_id": "rb", "name": "B", "metadata": {"role": "payee"}},
        {"type": "wallet.rename", "project_id": project, "wallet_id": "C", "reference_id": "rc", "name": "C2"},
        {"type": "customer.upsert", "project_id": project, "customer_id": "c2", "reference_id": "c2-again", "metadata": {}},
    ])
    assert all(r.status.value == "Completed" for r in changed), [r.error for r in changed]
    # Only the metadata changes (the same name): still not a balance-only change.
    [renamed] = apply(engine, [{"type": "wallet.rename", "project_id": project, "wallet_id": "B", "reference_id": "rb-2", "name": "B", "metadata": {"role": "payer"}}])
    assert renamed.status.value == "Completed", renamed.error
    with engine.connect() as connection:
        wallets = dict(connection.execute(sa.text("SELECT wallet_id, metadata FROM wallets WHERE project_id = :p"), {"p": project}).all())
        customer = connection.execute(sa.text("SELECT metadata FROM customers WHERE project_id = :p AND customer_id = 'c2'"), {"p": project}).scalar_one()
    assert (wallets, customer) == ({"A": {}, "B": {"role": "payer"}, "C": {"tier": "gold", "q": '"\\'}}, {})

    gateway = sa.create_engine(roles.database_url["gateway"])
    try:
        reads, first = Reads(gateway), Paging(page=1, page_size=50)
        found = reads.list_transactions(project, period=Period(), reference_id=None, paging=first, metadata=MetadataFilter(key="order", value="123"))
        # One batch: the same created_at, so (created_at, transaction_id) order is the IDs' order.
        assert sorted((t.reference_id, t.metadata) for t in found.items) == [("held", order), ("paid", order)]
        entries = reads.wallet_entries(project, "A", fractions=100, period=Period(), paging=first, metadata=MetadataFilter(key="order", value="123"))
        assert sorted((e.type, e.amount) for e in entries.items) == [("Debit", "5.00"), ("Hold", "2.00")]
        assert reads.wallet_entries(project, "B", fractions=100, period=Period(), paging=first, metadata=MetadataFilter(key="order", value="124")).items == []
        assert reads.get_hold(project, "h1").metadata == order and reads.get_wallet(project, "B").metadata == {"role": "payer"}
        assert reads.get_customer(project, "c2").metadata == {} and reads.get_wallet(project, "A").metadata == {}
    finally:
        gateway.dispose()
    assert audit_ledger(engine, project_id=project).ok


def test_the_metadata_filters_are_served_by_the_gin_index(database_url):
    """20,000 transactions of a project, each with its own order number and an entry of wallet A
    (rolled back after, in a project of its own): the gateway's listings, as reads.py builds
    them, find the one that matches through
    ix_transactions_metadata. Explained as the owner, whom FORCE ROW LEVEL SECURITY holds to the
    same rule as the gateway's role: no column statistics for `@>` (reads._found_first). At this
    size reading the whole table is still the cheapest plan, so sequential scans are off: the
    question is which index the planner takes. A plain ORDER BY ... LIMIT took the project's time
    index (ix_transactions_time, reading every transaction of the project for a rare value)."""
    from psycopg.types.json import Jsonb
    from sqlalchemy.dialects import postgresql

    from processor.gateway.reads import MetadataFilter, Period, entries_query, transactions_query

    project, wanted = f"gin-{uuid.uuid4().hex[:10]}", MetadataFilter(key="order", value="123")
    queries = [
        transactions_query(project, period=Period(), reference_id=None, metadata=wanted).limit(51),
        entries_query(project, "A", period=Period(), metadata=wanted).limit(51),
    ]
    owner = sa.create_engine(database_url)
    try:
        with owner.connect() as connection, connection.begin() as transaction:
            connection.execute(sa.text(
                "INSERT INTO transactions (project_id, transaction_id, reference_id, status, operations, created_at, metadata) "
                "SELECT :p, 'tx-' || n, 'ref-' || n, 'Completed', '[]', now(), jsonb_build_object('order', n::text, 'channel', 'web') "
                "FROM generate_series(1, 20000) AS n"), {"p": project})
            connection.execute(sa.text(
                "INSERT INTO wallet_entries (project_id, wallet_id, transaction_id, operation_index, entry_type, amount, balance_after, created_at) "
                "SELECT :p, 'A', 'tx-' || n, 0, 'Issue', 1, n, now() FROM generate_series(1, 20000) AS n"), {"p": project})
            connection.execute(sa.text("ANALYZE transactions, wallet_entries"))
            connection.execute(sa.text("SET LOCAL enable_seqscan = off"))
            cursor = connection.connection.driver_connection.cursor()
            plans = []
            for query in queries:
                compiled = query.compile(dialect=postgresql.dialect())
                cursor.execute("EXPLAIN " + compiled.string, {k: Jsonb(v) if isinstance(v, dict) else v for k, v in compiled.params.items()})
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
            transaction.rollback()
    finally:
        owner.dispose()
    for plan in plans:
        assert "ix_transactions_metadata" in plan and "ix_transactions_time" not in plan, plan


def test_a_named_hold_made_by_another_batch_after_its_wallets_were_read_is_left_out(engine, project, monkeypatch):
    """Loader rule 8 reads a named hold's wallets before the wallet locks and the hold after them:
    a hold committed in between by another partition's batch would come without its wallets."""
    [made] = apply(engine, [{"type": "hold.create", "project_id": project, "reference_id": "h", "hold_id": "h1", "wallet_id": "A", "amount": "5"}])
    assert made.status.value == "Completed"
    keys = state_keys([RequestAdapter.validate_python({"type": "hold.void", "project_id": project, "reference_id": "v", "hold_id": "h1"})])
    monkeypatch.setattr(PostgresUnitOfWork, "_hold_wallets", lambda self, named: set())  # as if read before h1 existed
    with PostgresUnitOfWork(engine) as uow:
        state = uow.load_state(keys)
    assert state.holds == {} and state.wallets == {}
