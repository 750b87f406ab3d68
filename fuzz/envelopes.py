"""Hostile record envelopes around answerable requests: binary, None and very many headers,
`reply_to` naming missing, invalid or the processor's own topics, and null, empty or huge keys
and values. The value is a valid request (answerable) unless the category is about the value."""

from __future__ import annotations

import hashlib
import hmac

import dataclasses

from fuzz.context import Context, Header, Outgoing, RawName, encode

ODD_HEADER_NAMES = ("", "\u202ecorrelation_id", "\U0001f4b8", "correlation_id ", "Correlation_Id", "reply_to\x00", "reply-to")
INVALID_REPLY_TO: dict[str, bytes] = {
    "empty": b"",
    "slash": b"a/b",
    "too_long_300": b"x" * 300,
    "not_utf8": b"\xff\xfe\x00",
    "space": b" ",
    "dot": b".",
    "dotdot": b"..",
    "inner_space": b"topic with space",
    "cyrillic": "\u0442\u043e\u043f\u0438\u043a".encode(),
    "nul_inside": b"a\x00b",
}


def _answerable(ctx: Context, n: int, *, category: str, detail: str, headers: list[Header], key: bytes | None | bool = True) -> Outgoing:
    """A valid request of a random type wrapped in `headers` (and `key`: True = the contract's)."""
    request, contract_key = ctx.any_request(n)
    return Outgoing(category=category, detail=detail, value=encode(request), key=contract_key if key is True else key, headers=tuple(headers))


def binary_headers(ctx: Context, n: int) -> Outgoing:
    """Header values and names no text decoder accepts: echoed or ignored, never fatal."""
    rng = ctx.rng
    variants: dict[str, list[Header]] = {
        "correlation_ff_fe_00": [("correlation_id", b"\xff\xfe\x00")],
        "correlation_random": [("correlation_id", rng.randbytes(rng.randint(1, 64)))],
        "correlation_20k": [("correlation_id", b"c" * 20_000)],
        "random_names_random_bytes": [(f"x-fuzz-{i}", rng.randbytes(rng.randint(0, 32))) for i in range(rng.randint(1, 5))],
        "odd_names": [(name, rng.randbytes(8)) for name in ODD_HEADER_NAMES],
        "empty_correlation": [("correlation_id", b"")],
        "name_not_utf8": [(RawName(b"\xff\xfe"), b"v"), (RawName(b"correlation_id\xc0"), b"x"), ("ok", b"1")],
    }
    variant = rng.choice(tuple(variants))
    record = _answerable(ctx, n, category="binary_headers", detail=variant, headers=variants[variant])
    # A raw header name goes as a batch of its own, which needs its partition named.
    return dataclasses.replace(record, partition=rng.randrange(ctx.partitions)) if variant == "name_not_utf8" else record


def trace_headers(ctx: Context, n: int) -> Outgoing:
    """W3C trace context headers, valid and not: a valid one gets the processor's span (when it
    traces), any other is ignored; none is ever fatal or changes the answer."""
    rng = ctx.rng
    trace_id, span_id = rng.getrandbits(128) | 1, rng.getrandbits(64) | 1
    valid = f"00-{trace_id:032x}-{span_id:016x}-01".encode()
    variants: dict[str, list[Header]] = {
        "valid": [("traceparent", valid)],
        "valid_unsampled": [("traceparent", valid[:-2] + b"00")],
        "valid_with_state": [("traceparent", valid), ("tracestate", b"fuzz=%d,other=x" % n)],
        "hostile_state": [("traceparent", valid), ("tracestate", rng.choice((b"\xff" * 600, b"a=" + b"b" * 5000, b"=,=,=", b"\x00")))],
        "garbage": [("traceparent", rng.choice((b"not a trace", b"00-", b"-" * 55, b"00-xyz-abc-01")))],
        "binary": [("traceparent", rng.randbytes(55))],
        "overlong": [("traceparent", valid + b"-" + b"a" * rng.choice((300, 20_000)))],
        "zero_ids": [("traceparent", b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01")],
        "uppercase": [("traceparent", valid.upper())],
        "version_ff": [("traceparent", b"ff" + valid[2:])],
        "none": [("traceparent", None), ("tracestate", None)],
        "repeated": [("traceparent", b"garbage %d" % i if i % 2 else valid) for i in range(rng.choice((2, 100)))],
    }
    variant = rng.choice(tuple(variants))
    return _answerable(ctx, n, category="trace_headers", detail=variant, headers=variants[variant])


def none_headers(ctx: Context, n: int) -> Outgoing:
    """Header values that are null on the wire, where code expects bytes."""
    missing = ctx.missing_topics[0].encode()
    variants: dict[str, list[Header]] = {
        "correlation_none": [("correlation_id", None)],
        "reply_to_none": [("reply_to", None)],
        "other_none": [("x-fuzz", None)],
        "both_none": [("correlation_id", None), ("reply_to", None)],
        "reply_to_none_then_missing": [("reply_to", None), ("reply_to", missing)],
    }
    variant = ctx.rng.choice(tuple(variants))
    if variant == "reply_to_none_then_missing":
        ctx.reply_topics_named.add(missing.decode())
    return _answerable(ctx, n, category="none_headers", detail=variant, headers=variants[variant])


def many_headers(ctx: Context, n: int) -> Outgoing:
    """Thousands of headers, and the meaningful ones repeated with conflicting values."""
    rng = ctx.rng
    count = 5000 if rng.random() < 0.1 else rng.choice((100, 1000))
    variant = rng.choice(("distinct", "correlation_repeated", "reply_to_repeated"))
    if variant == "distinct":
        headers: list[Header] = [(f"h{i}", b"%d" % i) for i in range(count)]
    elif variant == "correlation_repeated":
        headers = [("correlation_id", b"c%d" % i) for i in range(count)]
    else:
        targets = (ctx.results_topic.encode(), ctx.missing_topics[1].encode(), b"a/b", b"")
        headers = [("reply_to", targets[i % len(targets)]) for i in range(count)]
        ctx.reply_topics_named.add(ctx.missing_topics[1])
    return _answerable(ctx, n, category="many_headers", detail=f"{variant}_{count}", headers=headers)


def reply_to_missing(ctx: Context, n: int) -> Outgoing:
    """Mostly a small pool of names (a processor may cache lookups), some fresh, one 249 long."""
    roll = ctx.rng.random()
    if roll < 0.8:
        name, detail = ctx.rng.choice(ctx.missing_topics), "pooled"
    elif roll < 0.95:
        name, detail = f"{ctx.missing_topics[0]}.fresh{n}", "fresh"
    else:
        name, detail = (ctx.missing_topics[0] + ".").ljust(249, "z"), "name_249_chars"
    ctx.reply_topics_named.add(name)
    return _answerable(ctx, n, category="reply_to_missing", detail=detail, headers=[("reply_to", name.encode())])


def reply_to_invalid(ctx: Context, n: int) -> Outgoing:
    """reply_to values no topic can have: the answer must still go somewhere."""
    variant = ctx.rng.choice(tuple(INVALID_REPLY_TO))
    return _answerable(ctx, n, category="reply_to_invalid", detail=variant, headers=[("reply_to", INVALID_REPLY_TO[variant])])


def reply_to_requests(ctx: Context, n: int) -> Outgoing:
    """An answer addressed to the requests topic would come back as a request: a loop to refuse."""
    ctx.reply_topics_named.add(ctx.requests_topic)
    return _answerable(ctx, n, category="reply_to_requests", detail="requests_topic", headers=[("reply_to", ctx.requests_topic.encode())])


def reply_to_existing(ctx: Context, n: int) -> Outgoing:
    """Topics that exist: a usable reply topic, and the processor's own results and DLQ topics."""
    targets = {"own_replies_topic": ctx.replies_topic, "results_topic": ctx.results_topic, "dlq_topic": ctx.dlq_topic}
    variant = ctx.rng.choice(tuple(targets))
    ctx.reply_topics_named.add(targets[variant])
    return _answerable(ctx, n, category="reply_to_existing", detail=variant, headers=[("reply_to", targets[variant].encode()), ("correlation_id", b"r%d" % n)])


def null_key(ctx: Context, n: int) -> Outgoing:
    """A valid request without a key (the producer picks a partition): answered like any other."""
    return _answerable(ctx, n, category="null_key", detail="valid_request", headers=[], key=None)


def null_value(ctx: Context, n: int) -> Outgoing:
    """A tombstone (`value=None`), even with neither key nor value: nothing to parse, still owed an answer."""
    rng = ctx.rng
    variant = rng.choice(("no_key", "random_key", "contract_key", "with_reply_to"))
    _request, contract_key = ctx.any_request(n)
    key = {"no_key": None, "random_key": rng.randbytes(16)}.get(variant, contract_key)
    headers: tuple[Header, ...] = (("reply_to", ctx.replies_topic.encode()),) if variant == "with_reply_to" else ()
    partition = rng.randrange(ctx.partitions) if key is None else None  # no key: nothing to hash
    return Outgoing(category="null_value", detail=variant, value=None, key=key, headers=headers, partition=partition)


def empty_value(ctx: Context, n: int) -> Outgoing:
    """Zero bytes of value: not JSON, dead-lettered."""
    key = ctx.rng.choice((None, b"", ctx.rng.randbytes(16)))
    return Outgoing(category="empty_value", detail="no_key" if key is None else "with_key", value=b"", key=key)


def huge_key(ctx: Context, n: int) -> Outgoing:
    """Keys of up to ~1 MB around a valid request: answered by its reference, whatever the key."""
    rng = ctx.rng
    roll = rng.random()
    size = 1_000 if roll < 0.6 else 10_000 if roll < 0.9 else 64_000
    if roll > 0.98 and ctx.budget.take():
        size = 900_000
    key = rng.choice((b"k", b"\xff")) * size
    record = _answerable(ctx, n, category="huge_key", detail=f"key_{size}", headers=[], key=key)
    # aiokafka hashes keys in pure Python (~1 ms per 64 KB): pick the partition here instead.
    return dataclasses.replace(record, partition=rng.randrange(ctx.partitions))


FORGED_SIGNATURES = ("unsigned", "unknown_key", "wrong_secret", "other_bytes", "key_id_only", "two_signatures")


def forged_signature(ctx: Context, n: int) -> Outgoing:
    """A valid request whose signature does not hold: the tenant wall must answer it
    Unauthorized and apply nothing (or, signatures not required, apply the unsigned one)."""
    request, contract_key = ctx.any_request(n, prefix="sig")
    value = encode(request)
    variant = ctx.rng.choice(FORGED_SIGNATURES)
    key_id = (ctx.signing_key.key_id if ctx.signing_key else "0" * 16).encode()
    forged = hmac.new(ctx.rng.randbytes(32), value, hashlib.sha256).hexdigest().encode()
    honest = ctx.signing_key.headers(value) if ctx.signing_key else []
    headers: list[Header] = {
        "unsigned": [],
        "unknown_key": [("signature_key_id", b"%016x" % ctx.rng.getrandbits(64)), ("signature", forged)],
        "wrong_secret": [("signature_key_id", key_id), ("signature", forged)],
        "other_bytes": [("signature_key_id", key_id), (ctx.signing_key.headers(value + b" ")[1] if ctx.signing_key else ("signature", forged))],
        "key_id_only": [("signature_key_id", key_id)],
        # A forged signature first: the processor reads the first of each header.
        "two_signatures": [("signature_key_id", key_id), ("signature", forged), *honest],
    }[variant]
    return Outgoing(category="forged_signature", detail=variant, value=value, key=contract_key, headers=tuple(headers), unsigned=True)
