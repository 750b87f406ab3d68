"""Valid traffic interleaved with the hostile records: transfers between the fuzzer's wallets
(unique reference IDs), exact retries of earlier ones, and retries that reuse a reference with a
different payload. Hostile neighbours must never cost a valid request its answer."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from fuzz.context import Context, Outgoing, ValidSent, encode
from fuzz.world import key_of


def valid(ctx: Context, n: int) -> Outgoing:
    request = ctx.world.transfer(reference_id=f"v{n}", rng=ctx.rng)
    sent = ValidSent(request=request, key=key_of(request), value=encode(request), headers=(("correlation_id", b"v%d" % n),))
    ctx.recent_valid.append(sent)
    return Outgoing(category="valid", detail="transfer", value=sent.value, key=sent.key, headers=sent.headers)


def valid_hold(ctx: Context, n: int) -> Outgoing:
    """A hold on one of the fuzzer's wallets (half of them expiring within two seconds, so the
    engine's expiry and the sweep run among hostile neighbours), or a capture or void of one."""
    world, rng = ctx.world, ctx.rng
    if ctx.recent_holds and rng.random() < 0.5:
        hold_id = ctx.recent_holds.popleft()
        kind = rng.choice(("hold.capture", "hold.void"))
        request = {"type": kind, "project_id": world.project, "reference_id": f"v{n}", "hold_id": hold_id}
    else:
        source, target = rng.sample(world.wallets, 2)
        request = {"type": "hold.create", "project_id": world.project, "reference_id": f"v{n}", "hold_id": f"fh{n}", "wallet_id": source,
                   "amount": "0.01", **({"to_wallet_id": target} if rng.random() < 0.5 else {})}
        if rng.random() < 0.5:
            request["expires_at"] = (datetime.now(UTC) + timedelta(seconds=rng.uniform(0.2, 2.0))).isoformat()
        ctx.recent_holds.append(f"fh{n}")
        kind = "hold.create"
    sent = ValidSent(request=request, key=key_of(request), value=encode(request), headers=(("correlation_id", b"v%d" % n),))
    return Outgoing(category="valid_hold", detail=kind, value=sent.value, key=sent.key, headers=sent.headers)


def valid_retry(ctx: Context, n: int) -> Outgoing:
    """The very same record again (the client retried): answered DuplicateReferenceId."""
    if not ctx.recent_valid:
        return valid(ctx, n)
    sent = ctx.rng.choice(ctx.recent_valid)
    return Outgoing(category="valid_retry", detail="exact", value=sent.value, key=sent.key, headers=sent.headers)


def valid_conflict(ctx: Context, n: int) -> Outgoing:
    """An earlier reference with another amount, sometimes other wallets (another partition)."""
    if not ctx.recent_valid:
        return valid(ctx, n)
    request = copy.deepcopy(ctx.rng.choice(ctx.recent_valid).request)
    operation = request["operations"][0]
    operation["amount"] = "0.02"
    detail = "other_amount"
    if ctx.rng.random() < 0.5:
        operation["from_wallet_id"], operation["to_wallet_id"] = operation["to_wallet_id"], operation["from_wallet_id"]
        detail = "other_amount_reversed"
    return Outgoing(category="valid_conflict", detail=detail, value=encode(request), key=key_of(request))
