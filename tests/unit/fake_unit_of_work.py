"""An in-memory unit of work for the service's unit tests (the port: processor/service/unit_of_work.py).

It keeps the loader contract as MemoryStore does (tests/integration/test_loader_contract.py
runs the same checks against it and against PostgreSQL), and the transaction's shape: writes
are staged and take effect on `commit`; leaving the block without it changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType

from processor.ledger import BatchOutcome, LedgerState, StateKeys
from processor.ledger.state import ReferenceKey
from processor.storage.sources import Offsets, Source, Spender
from processor.storage.writing import StoredResults
from schemas.results import Result
from schemas.signing import KeyScope
from .memstore import MemoryStore


@dataclass
class FakeDatabase:
    """What PostgreSQL holds besides the ledger: offsets, record answers, spenders, keys."""

    ledger: MemoryStore = field(default_factory=MemoryStore)
    offsets: dict[tuple[str, str, int], int] = field(default_factory=dict)
    record_answers: dict[Source, Result] = field(default_factory=dict)
    spenders: dict[ReferenceKey, Spender] = field(default_factory=dict)
    signing_keys: dict[str, KeyScope] = field(default_factory=dict)
    commits: int = 0

    def unit_of_work(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)


class FakeUnitOfWork:
    def __init__(self, database: FakeDatabase) -> None:
        self.database = database
        self.reference_sources: dict[ReferenceKey, Source] = {}
        self.reference_hashes: dict[ReferenceKey, bytes] = {}
        self._staged: list[Callable[[], None]] = []

    def __enter__(self) -> FakeUnitOfWork:
        self._staged = []
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._staged = []  # not committed: rolled back

    def commit(self) -> None:
        for change in self._staged:
            change()
        self._staged = []
        self.database.commits += 1

    def load_offsets(self, *, consumer_group: str, topic: str) -> dict[int, int]:
        return {p: o for (g, t, p), o in self.database.offsets.items() if (g, t) == (consumer_group, topic)}

    def load_signing_keys(self, key_ids: Sequence[str]) -> dict[str, KeyScope]:
        return {k: self.database.signing_keys[k] for k in key_ids if k in self.database.signing_keys}

    def load_state(self, keys: StateKeys) -> LedgerState:
        state = self.database.ledger.load_keys(keys)
        self._note_spenders(state.references)
        return state

    def load_references(self, keys: Sequence[ReferenceKey]) -> dict[ReferenceKey, Result]:
        found = {key: self.database.ledger.references[key] for key in keys if key in self.database.ledger.references}
        self._note_spenders(found)
        return found

    def _note_spenders(self, references: Mapping[ReferenceKey, Result]) -> None:
        for key in references:
            spender = self.database.spenders.get(key)
            if spender is not None:
                self.reference_sources[key], self.reference_hashes[key] = spender

    def load_record_answers(self, sources: Sequence[Source]) -> dict[Source, Result]:
        return {s: self.database.record_answers[s] for s in sources if s in self.database.record_answers}

    def store_record_answers(self, answers: Sequence[tuple[Source, Result]], *, now: datetime) -> None:
        self._staged.append(lambda: self.database.record_answers.update(dict(answers)))

    def write(self, outcome: BatchOutcome, *, spenders: Mapping[ReferenceKey, Spender], now: datetime) -> StoredResults:
        stored = StoredResults({(r.project_id, r.reference_id): (r.result, r.result.model_dump_json()) for r in outcome.references})
        self._staged.append(lambda: self.database.ledger.write(outcome))
        self._staged.append(lambda: self.database.spenders.update(spenders))
        return stored

    def store_offsets(self, *, consumer_group: str, offsets: Offsets, now: datetime) -> None:
        def store() -> None:
            for (topic, partition), offset in offsets.items():
                key = (consumer_group, topic, partition)
                self.database.offsets[key] = max(self.database.offsets.get(key, 0), offset)

        self._staged.append(store)
