"""Hostile record values: random bytes, truncated and mutated requests, wrong top-level JSON,
duplicated keys, and a few records near the size limits. Each generator is `(ctx, n) -> Outgoing`."""

from __future__ import annotations

import json
from typing import Any

from fuzz.context import REQUEST_TYPES, Context, Outgoing, encode
from fuzz.values import FRAGMENTS
from fuzz.world import Path, field_paths, key_of, path_text

SENTINEL = "\u0001fuzz\u0001"
SENTINEL_JSON = json.dumps(SENTINEL).encode()
FRAGMENT_NAMES = tuple(FRAGMENTS)
# Byte maps turning random bytes into printable ASCII, or into JSON punctuation soup.
PRINTABLE = bytes(32 + b % 95 for b in range(256))
JSON_SOUP = b'{}[]":,\\u0 e-'
JSON_PUNCTUATION = bytes(JSON_SOUP[b % len(JSON_SOUP)] for b in range(256))


def random_bytes(ctx: Context, n: int) -> Outgoing:
    """Bytes no parser accepts: every error path of the decoder, none of them may stall it."""
    rng = ctx.rng
    variant = "binary_64k" if rng.random() < 0.02 else rng.choice(("binary", "printable", "json_prefix", "brace_junk"))
    size = 65_536 if variant == "binary_64k" else rng.randint(1, 2048)
    value = rng.randbytes(size)
    if variant == "printable":
        value = value.translate(PRINTABLE)
    elif variant == "json_prefix":
        value = b'{"type":"customer.upsert","reference_id":"h%d",' % n + value
    elif variant == "brace_junk":
        value = value.translate(JSON_PUNCTUATION)
    key = rng.choice((None, rng.randbytes(rng.randint(1, 32))))
    return Outgoing(category="random_bytes", detail=variant, value=value, key=key)


def truncated(ctx: Context, n: int) -> Outgoing:
    """A request cut short: parsing fails mid-token, sometimes inside a UTF-8 sequence."""
    request, key = ctx.any_request(n)
    if ctx.rng.random() < 0.3:  # multi-byte characters, so some cuts land inside one
        request["reference_id"] = f"h{n}-\u00e9\u4e2d\U0001f4b8"
    value = json.dumps(request, ensure_ascii=False).encode()
    cut = ctx.rng.randint(1, len(value) - 1)
    return Outgoing(category="truncated", detail=f"{request['type']}", value=value[:cut], key=key)


def splice(request: dict[str, Any], *, path: Path, fragment: bytes) -> bytes:
    """The request as JSON with the field at `path` replaced by raw `fragment` bytes."""
    holder: Any = request
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = SENTINEL
    return encode(request).replace(SENTINEL_JSON, fragment, 1)


def without(request: dict[str, Any], *, path: Path) -> bytes:
    """The request as JSON without the field at `path` (a missing field must be answered)."""
    holder: Any = request
    for part in path[:-1]:
        holder = holder[part]
    del holder[path[-1]]
    return encode(request)


def mutated_field(ctx: Context, n: int) -> Outgoing:
    """One field of a valid request replaced by a hostile value (or removed, or one added)."""
    rng = ctx.rng
    request_type = rng.choice(REQUEST_TYPES)
    request = ctx.world.template(request_type, reference_id=f"h{n}", rng=rng)
    key = key_of(request)
    path = rng.choice(field_paths(request))
    roll = rng.random()
    if roll < 0.05:
        return Outgoing(category="mutated_field", detail=f"{request_type}:{path_text(path)}=<removed>", value=without(request, path=path), key=key)
    name = rng.choice(ctx.fragment_names or FRAGMENT_NAMES)
    if roll < 0.10:  # an unknown field next to the chosen one (at the top when that is in a list)
        path = (*path[:-1], "fuzz_extra") if not isinstance(path[-1], int) else ("fuzz_extra",)
    fragment = FRAGMENTS[name](rng, ctx.budget)
    value = splice(request, path=path, fragment=fragment)
    return Outgoing(category="mutated_field", detail=f"{request_type}:{path_text(path)}={name}", value=value, key=key)


def wrong_top_level(ctx: Context, n: int) -> Outgoing:
    """JSON that is not a request object (or not UTF-8 JSON at all): dead-lettered, never applied."""
    request, key = ctx.any_request(n)
    valid = encode(request)
    variants: dict[str, bytes] = {
        "array": b"[" + valid + b"]",
        "empty_array": b"[]",
        "number": b"12345",
        "float": b"-1.5e10",
        "string": json.dumps(valid.decode()).encode(),
        "null": b"null",
        "true": b"true",
        "empty_object": b"{}",
        "reference_only_number": b'{"reference_id": 5}',
        "whitespace": b" \n\t ",
        "bom_prefixed": b"\xef\xbb\xbf" + valid,
        "utf16": json.dumps(request).encode("utf-16"),
        "utf32": json.dumps(request).encode("utf-32"),
        "trailing_garbage": valid + b" x",
        "two_objects": valid + valid,
        "lone_surrogate_string": b'"\\ud800"',
        "int_literal_5000": b"9" * 5000,
        "deep_array_5000": b"[" * 5000 + b"]" * 5000,
    }
    variant = ctx.rng.choice(tuple(variants))
    return Outgoing(category="wrong_top_level", detail=variant, value=variants[variant], key=key)


def duplicate_keys(ctx: Context, n: int) -> Outgoing:
    """Objects naming a key twice: parsers disagree on which wins; the answer must name one."""
    rng = ctx.rng
    request, key = ctx.any_request(n)
    body = encode(request)[1:]  # without the opening brace
    variants: dict[str, bytes] = {
        "reference_id_twice": b'{"reference_id": "h%d-first", ' % n + body,
        "reference_id_then_number": b'{"reference_id": 5, ' + body,
        "reference_id_number_last": b"{" + body[:-1] + b', "reference_id": 5}',
        "type_twice": b'{"type": "project.create", ' + body,
        "project_id_twice": b'{"project_id": "other-project", ' + body,
        "same_key_2000_times": b"{" + b'"name": "x", ' * 2000 + body,
    }
    if request["type"] == "transaction.run":
        variants["amount_twice"] = encode(request).replace(b'"amount": "0.01"', b'"amount": "0.01", "amount": 5', 1)
    variant = rng.choice(tuple(variants))
    return Outgoing(category="duplicate_keys", detail=variant, value=variants[variant], key=key)


NEAR_LIMIT_VARIANTS = ("padded_request_1_9mb", "random_1_9mb", "reference_id_near_request_limit", "padded_request_under_request_limit", "at_broker_limit")


def near_limit(ctx: Context, n: int) -> Outgoing:
    """Records near the processor's request limit and the broker's message limit (few of them)."""
    variant = NEAR_LIMIT_VARIANTS[ctx.near_limit_sent % len(NEAR_LIMIT_VARIANTS)]
    ctx.near_limit_sent += 1
    request = ctx.world.transfer(reference_id=f"h{n}", rng=ctx.rng)
    key = key_of(request)
    valid = encode(request)
    if variant == "padded_request_1_9mb":
        value = valid[:-1] + b" " * (1_900_000 - len(valid)) + b"}"
    elif variant == "random_1_9mb":
        value = ctx.rng.randbytes(1_900_000)
    elif variant == "reference_id_near_request_limit":
        request["reference_id"] = "R" * (ctx.max_request_bytes - len(valid) - 64)
        value = encode(request)
    elif variant == "padded_request_under_request_limit":
        value = valid[:-1] + b" " * (ctx.max_request_bytes - len(valid) - 1) + b"}"
    else:  # as large as the broker takes: a dead letter that copies it with more headers would not fit
        value = ctx.rng.randbytes(ctx.broker_max_bytes - 160)
        key = None
    return Outgoing(category="near_limit", detail=variant, value=value, key=key)
