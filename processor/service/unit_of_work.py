"""The service's port to storage: what a batch needs from a unit of work, and nothing more.

The service is handed a factory of these (`UnitOfWorkFactory`) by whoever runs it — the Kafka
app and bench.micro give it PostgreSQL's (processor/storage/postgres_unit_of_work.py), the unit tests an
in-memory fake (tests/unit/fake_unit_of_work.py) — so its rules (duplicates, redelivery, the
refusal of one record) are tested without a database, and one loader-contract test
(tests/integration/test_loader_contract.py) holds both implementations to the same loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol

from processor.ledger.outcome import BatchOutcome
from processor.ledger.state import LedgerState, ReferenceKey
from processor.ledger.state_keys import StateKeys
from processor.storage.sources import Offsets, Source, Spender
from processor.storage.writing import StoredResults
from schemas.results import Result
from schemas.signing import KeyScope


class UnitOfWork(Protocol):
    """One batch's transaction: `with factory() as uow: ...; uow.commit()`; leaving the block
    without `commit` changes nothing."""

    # For each spent reference loaded (by `load_state` or `load_references`): the record that
    # spent it, and the SHA-256 of that record's value (unknown for rows from before 0003).
    reference_sources: dict[ReferenceKey, Source]
    reference_hashes: dict[ReferenceKey, bytes]

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None: ...

    def load_offsets(self, *, consumer_group: str, topic: str) -> dict[int, int]: ...

    def load_signing_keys(self, key_ids: Sequence[str]) -> dict[str, KeyScope]: ...

    def load_state(self, keys: StateKeys) -> LedgerState: ...

    def load_references(self, keys: Sequence[ReferenceKey]) -> dict[ReferenceKey, Result]: ...

    def load_record_answers(self, sources: Sequence[Source]) -> dict[Source, Result]: ...

    def store_record_answers(self, answers: Sequence[tuple[Source, Result]], *, now: datetime) -> None: ...

    def write(self, outcome: BatchOutcome, *, spenders: Mapping[ReferenceKey, Spender], now: datetime) -> StoredResults: ...

    def store_offsets(self, *, consumer_group: str, offsets: Offsets, now: datetime) -> None: ...

    def commit(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
