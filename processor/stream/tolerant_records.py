"""Reading past a record whose header key is not UTF-8, instead of stalling on it.

Kafka header keys are strings, but the broker stores whatever bytes a producer sends (a C
client can send any). aiokafka decodes every header key strictly while it unpacks a fetched
record batch; one bad key raises CorruptRecordException from every poll, the consumer never
gets past that offset, and the partition stalls for good. The batch is not corrupt, only
that key is unreadable as text.

`install()` wraps the record sets aiokafka's fetcher builds. Batches are unpacked by aiokafka's
own (compiled) reader as before; only when one fails is that batch unpacked again by aiokafka's
pure-Python reader with header keys decoded leniently (invalid bytes escaped as `\\xNN`), and
the records not yet handed out are handed out. The processor then answers or dead-letters the
record like any other. Nothing changes on the hot path but one slice per batch.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import _DefaultRecordBatchPy
from aiokafka.record.memory_records import MemoryRecords

_BATCH_HEADER = struct.Struct(">qi")  # base offset, batch length (the bytes after these 12)


class _LenientBytes(bytearray):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:  # type: ignore[override]
        return bytearray.decode(self, encoding, "backslashreplace")


class _LenientBuffer(bytearray):
    def __getitem__(self, index: Any) -> Any:
        item = bytearray.__getitem__(self, index)
        return _LenientBytes(item) if isinstance(index, slice) else item


class _LenientBatch(_DefaultRecordBatchPy):
    """aiokafka's pure-Python batch reader, decoding header keys with invalid bytes escaped."""

    def _maybe_uncompress(self) -> None:
        super()._maybe_uncompress()
        if not isinstance(self._buffer, _LenientBuffer):
            self._buffer = _LenientBuffer(self._buffer)


class _FallbackBatch:
    """A compiled batch that falls back to `_LenientBatch` for the records it cannot unpack."""

    def __init__(self, batch: Any, data: bytes, start: int, end: int) -> None:
        self._batch = batch
        self._where = (data, start, end)  # sliced only if the fallback is needed
        self._records: Iterator[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        self._records = self._unpack()
        return self._records

    def __next__(self) -> Any:
        if self._records is None:
            self._records = self._unpack()
        return next(self._records)

    def _unpack(self) -> Iterator[Any]:
        handed_out = 0
        try:
            for record in self._batch:
                handed_out += 1
                yield record
            return
        except (CorruptRecordException, UnicodeDecodeError):  # the compiled reader raises either
            pass
        data, start, end = self._where
        for index, record in enumerate(_LenientBatch(data[start:end])):
            if index >= handed_out:
                yield record


class TolerantRecords:
    """aiokafka's MemoryRecords, with each batch able to fall back (see the module docstring)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._records = MemoryRecords(data)
        self._position = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._records, name)

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None:
            return None
        start = self._position
        _offset, length = _BATCH_HEADER.unpack_from(self._data, start)
        self._position = start + _BATCH_HEADER.size + length
        return _FallbackBatch(batch, self._data, start, self._position)


def install() -> None:
    """Make every consumer of this process read past undecodable header keys.

    This leans on aiokafka's internals (pinned below 0.15 in pyproject.toml); if they moved,
    start-up fails here rather than a partition stalling later."""
    missing = [name for name in ("_maybe_uncompress", "_read_msg") if not hasattr(_DefaultRecordBatchPy, name)]
    if not hasattr(fetcher, "MemoryRecords") or missing:
        raise RuntimeError(f"aiokafka's record reader changed (missing: {missing or ['fetcher.MemoryRecords']}): update processor/stream/tolerant_records.py")
    fetcher.MemoryRecords = TolerantRecords  # type: ignore[attr-defined, misc]
