"""The record stream: which category comes next, and the generator for each category.

Records are generated lazily, one at a time, in shuffled blocks: every block holds every selected
category at least once (so even a few hundred records cover them all) in proportion to its weight.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

from fuzz import envelopes, payloads, valid
from fuzz.context import Context, Outgoing

Generator = Callable[[Context, int], Outgoing]

# Hostile categories and their relative weights (their total share is 1 - valid_share).
HOSTILE: dict[str, tuple[float, Generator]] = {
    "random_bytes": (10, payloads.random_bytes),
    "truncated": (10, payloads.truncated),
    "mutated_field": (40, payloads.mutated_field),
    "wrong_top_level": (6, payloads.wrong_top_level),
    "duplicate_keys": (5, payloads.duplicate_keys),
    "binary_headers": (4, envelopes.binary_headers),
    "none_headers": (3, envelopes.none_headers),
    "trace_headers": (2, envelopes.trace_headers),
    "many_headers": (2, envelopes.many_headers),
    "reply_to_missing": (2, envelopes.reply_to_missing),
    "reply_to_invalid": (3, envelopes.reply_to_invalid),
    "reply_to_requests": (1, envelopes.reply_to_requests),
    "reply_to_existing": (1, envelopes.reply_to_existing),
    "null_key": (3, envelopes.null_key),
    "null_value": (3, envelopes.null_value),
    "empty_value": (2, envelopes.empty_value),
    "huge_key": (2, envelopes.huge_key),
    "forged_signature": (4, envelopes.forged_signature),
}
# Valid categories (their total share is valid_share).
VALID: dict[str, tuple[float, Generator]] = {
    "valid": (80, valid.valid),
    "valid_retry": (10, valid.valid_retry),
    "valid_conflict": (10, valid.valid_conflict),
    "valid_hold": (8, valid.valid_hold),
}
# Not weighted: a fixed, small number of ~1-2 MB records, spread evenly over the run.
NEAR_LIMIT = "near_limit"
CATEGORIES: tuple[str, ...] = (*HOSTILE, NEAR_LIMIT, *VALID)
GENERATORS: dict[str, Generator] = {name: generator for name, (_w, generator) in (HOSTILE | VALID).items()} | {NEAR_LIMIT: payloads.near_limit}
BLOCK = 250


def near_limit_count(records: int) -> int:
    """One per variant at least, one per 5,000 records, never more than 20 (~40 MB)."""
    return min(20, max(len(payloads.NEAR_LIMIT_VARIANTS), records // 5000), records)


def block_slots(*, selected: Sequence[str], valid_share: float) -> list[str]:
    """One block of category names: each selected category at least once, else by weight."""
    hostile = {name: HOSTILE[name][0] for name in selected if name in HOSTILE}
    valid_ = {name: VALID[name][0] for name in selected if name in VALID}
    share = valid_share if hostile and valid_ else (1.0 if valid_ else 0.0)
    slots: list[str] = []
    for group, group_share in ((hostile, 1.0 - share), (valid_, share)):
        total = sum(group.values())
        for name, weight in group.items():
            slots += [name] * max(1, round(BLOCK * group_share * weight / total))
    return slots


def schedule(*, records: int, selected: Sequence[str], valid_share: float, rng: random.Random) -> Iterator[str]:
    """The category of each of `records` records, in order."""
    near = near_limit_count(records) if NEAR_LIMIT in selected else 0
    spacing = records // near if near else 0
    template = block_slots(selected=selected, valid_share=valid_share)
    if not template:  # near_limit alone: only its few records
        yield from [NEAR_LIMIT] * near
        return
    block: list[str] = []
    placed = 0
    for index in range(records):
        if near and placed < near and index % spacing == spacing // 2:
            placed += 1
            yield NEAR_LIMIT
            continue
        if not block:
            block = template.copy()
            rng.shuffle(block)
        yield block.pop()


def generate(ctx: Context, *, records: int, selected: Sequence[str], valid_share: float) -> Iterator[Outgoing]:
    for index, category in enumerate(schedule(records=records, selected=selected, valid_share=valid_share, rng=ctx.rng)):
        yield GENERATORS[category](ctx, index)
