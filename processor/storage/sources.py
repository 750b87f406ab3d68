"""Where a batch's records came from, as PostgreSQL stores it next to the ledger."""

from __future__ import annotations

from collections.abc import Mapping

# (topic, partition) -> the next offset to consume
Offsets = Mapping[tuple[str, int], int]
# (topic, partition, offset) of a Kafka record
Source = tuple[str, int, int]
# The record that spends a reference, and the SHA-256 of its value
Spender = tuple[Source, bytes]
