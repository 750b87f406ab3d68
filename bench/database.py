"""The PostgreSQL side on its own, no Kafka: the raw-PostgreSQL limit and the per-request baseline.

Both apply the uniform workload (the same transfers, same seed) to a database of their own with
the same schema, 10,000 (`wallets`) funded wallets loaded by COPY:

* raw PostgreSQL: per batch of `batch` transfers, one transaction writing exactly the rows the
  ledger writes (wallets locked in sorted order and updated, transactions, entries, spent
  references with their result JSON, the consumer offset), with COPY and one UPDATE ... FROM
  unnest — the least SQL work the processor could do; the Python is only row building.
* per request: one PostgreSQL transaction per transfer, the classic way: check the reference,
  SELECT ... FOR UPDATE both wallets (sorted), update them, insert the transaction, its two
  entries and the spent reference, COMMIT; `connections` threads in parallel.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import psycopg

from bench.workloads import ASSET, FUNDING, wallet_id

PROJECT = "rawpg"
NAMESPACE = uuid.UUID("3d4b8f36-9a0e-5c1a-9d1e-6b2f0c7a4e11")


def _conninfo(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def _cents(amount: str) -> int:
    units, _, fraction = amount.partition(".")
    return int(units) * 100 + int((fraction + "00")[:2])


def _fmt(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def load_wallets(database_url: str, *, project: str, wallets: int) -> None:
    """Project, asset and funded wallets, bulk-loaded (set-up, not timed)."""
    now = datetime.now(UTC)
    funding = int(FUNDING) * 100
    with psycopg.connect(_conninfo(database_url)) as conn:
        conn.execute("INSERT INTO projects (project_id, name, created_at) VALUES (%s, %s, %s)", (project, "raw", now))
        conn.execute(
            "INSERT INTO assets (project_id, asset_id, code, name, fractions, in_use, created_at) VALUES (%s, %s, 'USD', 'US dollar', 100, true, %s)",
            (project, ASSET, now),
        )
        with conn.cursor().copy("COPY wallets (project_id, wallet_id, asset_id, customer_id, name, description, status, balance, created_at, updated_at) FROM STDIN") as copy:
            for i in range(wallets):
                copy.write_row((project, wallet_id(i), ASSET, None, "", "", "Open", funding, now, now))
        tid = f"fund-{project}"
        conn.execute(
            "INSERT INTO transactions (project_id, transaction_id, reference_id, description, status, operations, created_at) VALUES (%s, %s, %s, '', 'Completed', '[]', %s)",
            (project, tid, tid, now),
        )
        with conn.cursor().copy("COPY wallet_entries (project_id, wallet_id, transaction_id, operation_index, entry_type, amount, balance_after, created_at) FROM STDIN") as copy:
            for i in range(wallets):
                copy.write_row((project, wallet_id(i), tid, i, "Issue", funding, funding, now))


def _result_json(project: str, reference: str, transaction_id: str, source: str, target: str, amount: str, after_source: int, after_target: int, now: str) -> str:
    """A transfer's result as the processor writes it (same fields, same size)."""
    return (
        f'{{"reference_id":"{reference}","project_id":"{project}","type":"transaction.run","status":"Completed","error":null,'
        f'"processed_at":"{now}","project":null,"asset":null,"customer":null,"wallet":null,"wallets":null,'
        f'"transaction":{{"project_id":"{project}","transaction_id":"{transaction_id}","reference_id":"{reference}","description":"",'
        f'"status":"Completed","operations":[{{"type":"Transfer","from_wallet_id":"{source}","to_wallet_id":"{target}","amount":"{amount}"}}],'
        f'"entries":[{{"wallet_id":"{source}","operation_index":0,"type":"Debit","amount":"{amount}","balance_after":"{_fmt(after_source)}"}},'
        f'{{"wallet_id":"{target}","operation_index":0,"type":"Credit","amount":"{amount}","balance_after":"{_fmt(after_target)}"}}],'
        f'"error":null,"created_at":"{now}"}},"original":null}}'
    )


@dataclass(kw_only=True)
class DbRun:
    name: str
    transactions: int
    elapsed: float
    conflicts: int = 0

    def rate(self) -> float:
        return self.transactions / self.elapsed if self.elapsed > 0 else 0.0


def raw_batches(
    database_url: str,
    transfers: Iterable[tuple[str, str, str, str]],
    *,
    batch: int,
    project: str = PROJECT,
    progress: Callable[[int], None] | None = None,
) -> DbRun:
    """Write the uniform workload's rows in batches: the PostgreSQL limit."""
    conn = psycopg.connect(_conninfo(database_url))
    done = 0
    offset = 0
    started = time.monotonic()
    try:
        chunk: list[tuple[str, str, str, str]] = []
        for item in _with_end(transfers):
            if item is not None:
                chunk.append(item)
            if chunk and (len(chunk) >= batch or item is None):
                now = datetime.now(UTC)
                stamp = now.isoformat().replace("+00:00", "Z")
                ids = sorted({w for _, s, t, _ in chunk for w in (s, t)})
                with conn.transaction():
                    cur = conn.cursor()
                    cur.execute(
                        "SELECT wallet_id, balance FROM wallets WHERE project_id = %s AND wallet_id = ANY(%s) ORDER BY wallet_id FOR UPDATE",
                        (project, ids),
                    )
                    balances = {w: int(b) for w, b in cur.fetchall()}
                    transactions, entries, references = [], [], []
                    for reference, source, target, amount in chunk:
                        cents = _cents(amount)
                        balances[source] -= cents
                        balances[target] += cents
                        tid = str(uuid.uuid5(NAMESPACE, f"transaction:{project}:{reference}"))
                        operations = json.dumps([{"type": "Transfer", "from_wallet_id": source, "to_wallet_id": target, "amount": amount}])
                        transactions.append((project, tid, reference, "", "Completed", operations, now))
                        entries.append((project, source, tid, 0, "Debit", cents, balances[source], now))
                        entries.append((project, target, tid, 0, "Credit", cents, balances[target], now))
                        result = _result_json(project, reference, tid, source, target, amount, balances[source], balances[target], stamp)
                        references.append((project, reference, "transaction.run", result, "bench.raw", 0, offset, now))
                        offset += 1
                    cur.execute(
                        "UPDATE wallets w SET balance = v.balance, updated_at = %s FROM unnest(%s::text[], %s::numeric[]) AS v(wallet_id, balance) "
                        "WHERE w.project_id = %s AND w.wallet_id = v.wallet_id",
                        (now, list(balances), [Decimal(b) for b in balances.values()], project),
                    )
                    with cur.copy("COPY transactions (project_id, transaction_id, reference_id, description, status, operations, created_at) FROM STDIN") as copy:
                        for row in transactions:
                            copy.write_row(row)
                    with cur.copy("COPY wallet_entries (project_id, wallet_id, transaction_id, operation_index, entry_type, amount, balance_after, created_at) FROM STDIN") as copy:
                        for row in entries:
                            copy.write_row(row)
                    with cur.copy(
                        "COPY processed_requests (project_id, reference_id, request_type, result, source_topic, source_partition, source_offset, created_at) FROM STDIN"
                    ) as copy:
                        for row in references:
                            copy.write_row(row)
                    cur.execute(
                        "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, updated_at) VALUES ('raw', 'bench.raw', 0, %s, %s) "
                        "ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset), updated_at = EXCLUDED.updated_at",
                        (offset, now),
                    )
                done += len(chunk)
                chunk = []
                if progress:
                    progress(done)
    finally:
        conn.close()
    return DbRun(name="raw_postgresql", transactions=done, elapsed=time.monotonic() - started)


def _with_end(items: Iterable[tuple[str, str, str, str]]) -> Iterator[tuple[str, str, str, str] | None]:
    yield from items
    yield None


def _one_transfer(conn: psycopg.Connection, project: str, reference: str, source: str, target: str, amount: str) -> None:
    """One transfer in one PostgreSQL transaction, as a per-request ledger does it: check the
    reference, lock both wallets, update them, insert the transaction, its entries and the
    spent reference (nothing if the reference was spent before)."""
    cents = _cents(amount)
    tid = str(uuid.uuid5(NAMESPACE, f"transaction:{project}:{reference}"))
    with conn.transaction():
        now = datetime.now(UTC)
        if conn.execute("SELECT 1 FROM processed_requests WHERE project_id = %s AND reference_id = %s", (project, reference)).fetchone():
            return
        rows = conn.execute(
            "SELECT wallet_id, balance FROM wallets WHERE project_id = %s AND wallet_id = ANY(%s) ORDER BY wallet_id FOR UPDATE",
            (project, sorted((source, target))),
        ).fetchall()
        balances = {w: int(b) for w, b in rows}
        if balances[source] < cents:
            raise RuntimeError("insufficient funds in the baseline: not expected")
        balances[source] -= cents
        balances[target] += cents
        for wallet in (source, target):
            conn.execute("UPDATE wallets SET balance = %s, updated_at = %s WHERE project_id = %s AND wallet_id = %s", (balances[wallet], now, project, wallet))
        operations = json.dumps([{"type": "Transfer", "from_wallet_id": source, "to_wallet_id": target, "amount": amount}])
        conn.execute(
            "INSERT INTO transactions (project_id, transaction_id, reference_id, description, status, operations, created_at) "
            "VALUES (%s, %s, %s, '', 'Completed', %s, %s)",
            (project, tid, reference, operations, now),
        )
        conn.execute(
            "INSERT INTO wallet_entries (project_id, wallet_id, transaction_id, operation_index, entry_type, amount, balance_after, created_at) "
            "VALUES (%s, %s, %s, 0, 'Debit', %s, %s, %s), (%s, %s, %s, 0, 'Credit', %s, %s, %s)",
            (project, source, tid, cents, balances[source], now, project, target, tid, cents, balances[target], now),
        )
        stamp = now.isoformat().replace("+00:00", "Z")
        conn.execute(
            "INSERT INTO processed_requests (project_id, reference_id, request_type, result, created_at) VALUES (%s, %s, 'transaction.run', %s, %s)",
            (project, reference, _result_json(project, reference, tid, source, target, amount, balances[source], balances[target], stamp), now),
        )


def per_request(
    database_url: str,
    transfers: Iterable[tuple[str, str, str, str]],
    *,
    connections: int,
    project: str,
    progress: Callable[[int], None] | None = None,
) -> DbRun:
    """One PostgreSQL transaction per transfer, `connections` at a time: the baseline."""
    work: queue.Queue[tuple[str, str, str, str] | None] = queue.Queue(maxsize=10_000)
    done = 0
    conflicts = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        nonlocal done, conflicts
        try:
            with psycopg.connect(_conninfo(database_url)) as conn:
                while (item := work.get()) is not None:
                    while True:
                        try:
                            _one_transfer(conn, project, *item)
                            with lock:
                                done += 1
                            break
                        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                            with lock:
                                conflicts += 1
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for count, item in enumerate(transfers, start=1):
        work.put(item)
        if progress and count % 1000 == 0:
            progress(done)
        if errors:
            break
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return DbRun(name="per_request", transactions=done, elapsed=time.monotonic() - started, conflicts=conflicts)
