"""Hostile JSON values, as raw bytes spliced into otherwise valid requests.

Raw bytes, not Python objects, because the interesting inputs cannot be produced by `json.dumps`:
lone surrogates written as escapes, integer literals beyond Python's 4,300-digit limit, nesting
deeper than any recursive encoder allows, NaN, invalid UTF-8 inside a string.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

Fragment = Callable[[random.Random, "Budget"], bytes]


@dataclass(kw_only=True)
class Budget:
    """How many big (~1 MB) and medium (~100 KB) payloads a run may still build: keeps 100k
    records to ~150 MB, which this 2-core machine's broker and processor get through in minutes."""

    big_left: int
    medium_left: int

    def take(self) -> bool:
        if self.big_left <= 0:
            return False
        self.big_left -= 1
        return True

    def take_medium(self) -> bool:
        """A payload of ~100 KiB."""
        if self.medium_left <= 0:
            return False
        self.medium_left -= 1
        return True

    @classmethod
    def for_records(cls, records: int) -> Budget:
        return cls(big_left=max(4, records // 10_000), medium_left=max(8, records // 500))


def _nested(open_: bytes, close: bytes, depth: int, inner: bytes = b"1") -> bytes:
    return open_ * depth + inner + close * depth


def _deep_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _deep_mixed(depth: int) -> bytes:
    half = depth // 2
    return b'[{"a":' * half + b"null" + b"}]" * half


def _huge_string(size: int, *, take: Callable[[Budget], bool] | None = None) -> Fragment:
    """`size` characters while the budget lasts (`take`), then 10,000."""

    def build(rng: random.Random, budget: Budget) -> bytes:
        length = size if take is None or take(budget) else 10_000
        letter = rng.choice(b"ABCxyz019")
        return b'"' + bytes([letter]) * length + b'"'

    return build


def _fixed(text: bytes) -> Fragment:
    return lambda _rng, _budget: text


def _utf8(text: str) -> Fragment:
    """A JSON string holding `text` as raw UTF-8 (not escaped)."""
    return _fixed(b'"' + text.encode("utf-8") + b'"')


def _random_printable(rng: random.Random, _budget: Budget) -> bytes:
    alphabet = "abcXYZ09 .-_@\u200f\u202e\u200b\u0301\U0001f4b8\u00e9\u4e2d"
    return b'"' + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))).encode() + b'"'


FRAGMENTS: dict[str, Fragment] = {
    # wrong JSON types
    "null": _fixed(b"null"),
    "true": _fixed(b"true"),
    "false": _fixed(b"false"),
    "int_zero": _fixed(b"0"),
    "int_one": _fixed(b"1"),
    "int_negative": _fixed(b"-1"),
    "empty_array": _fixed(b"[]"),
    "empty_object": _fixed(b"{}"),
    "array_of_strings": _fixed(b'["a","b"]'),
    "object": _fixed(b'{"a":1,"type":"Issue"}'),
    # numbers: floats, zero and negative, exponents, non-standard JSON
    "float": _fixed(b"1.5"),
    "float_tenth": _fixed(b"0.1"),
    "float_negative": _fixed(b"-12.34"),
    "negative_zero_float": _fixed(b"-0.0"),
    "zero_string": _fixed(b'"0"'),
    "zero_decimal_string": _fixed(b'"0.00"'),
    "negative_string": _fixed(b'"-1.00"'),
    "exponent": _fixed(b"1e3"),
    "exponent_string": _fixed(b'"1e3"'),
    "exponent_overflow": _fixed(b"1e400"),
    "exponent_tiny": _fixed(b"1E-7"),
    "nan": _fixed(b"NaN"),
    "infinity": _fixed(b"Infinity"),
    "negative_infinity": _fixed(b"-Infinity"),
    "padded_amount_string": _fixed(b'" 1.00 "'),
    "fullwidth_digits": _utf8("\uff11\uff12"),
    "arabic_digits": _utf8("\u0661\u0662\u0663"),
    # long digit strings and integer literals beyond Python's int limit (4300 digits)
    "digit_string_1000": _fixed(b'"' + b"9" * 1000 + b'"'),
    "int_literal_1000": _fixed(b"9" * 1000),
    "int_literal_4301": _fixed(b"1" + b"0" * 4300),
    "int_literal_20000": _fixed(b"7" * 20_000),
    "negative_int_literal_5000": _fixed(b"-" + b"9" * 5000),
    "float_literal_5000_digits": _fixed(b"0." + b"0" * 5000 + b"1"),
    # strings: empty, huge, control characters, NUL, lone surrogates, odd unicode
    "empty_string": _fixed(b'""'),
    "whitespace_string": _fixed(b'"   "'),
    "huge_string_10k": _huge_string(10_000),
    "huge_string_100k": _huge_string(100_000, take=Budget.take_medium),
    "huge_string_1m": _huge_string(1_000_000, take=Budget.take),
    "nul": _fixed(b'"\\u0000"'),
    "nul_inside": _fixed(b'"ab\\u0000cd"'),
    "control_characters": _fixed(b'"a\\u0007\\u001b[31mb\\t\\n"'),
    "lone_high_surrogate": _fixed(b'"\\ud800"'),
    "lone_low_surrogate": _fixed(b'"x\\udfff"'),
    "reversed_surrogates": _fixed(b'"\\udc00\\ud800"'),
    "high_surrogate_then_text": _fixed(b'"\\ud83dabc"'),
    "escaped_emoji_pair": _fixed(b'"\\ud83d\\udcb8"'),
    "rtl_marks": _utf8("\u200fabc\u202edef\u202c"),
    "zero_width": _utf8("a\u200bb\u200dc\ufeff"),
    "emoji": _utf8("\U0001f4b8\U0001f3e6\U0001f468\u200d\U0001f469\u200d\U0001f467"),
    "combining_marks": _utf8("e\u0301\u0301\u0301\u0336\u20dd"),
    "noncharacters": _utf8("\uffff\ufdd0\U0010ffff"),
    "random_unicode": _random_printable,
    # bytes that are not UTF-8 inside a JSON string
    "invalid_utf8": _fixed(b'"\xff\xfe"'),
    "overlong_utf8": _fixed(b'"\xc0\xaf"'),
    "raw_surrogate_utf8": _fixed(b'"\xed\xa0\x80"'),
    # deep nesting
    "deep_array_50": _fixed(_nested(b"[", b"]", 50)),
    "deep_array_1000": _fixed(_nested(b"[", b"]", 1000)),
    "deep_array_5000": _fixed(_nested(b"[", b"]", 5000)),
    "deep_object_50": _fixed(_deep_objects(50)),
    "deep_object_1000": _fixed(_deep_objects(1000)),
    "deep_object_5000": _fixed(_deep_objects(5000)),
    "deep_mixed_2000": _fixed(_deep_mixed(2000)),
    # well-formed but pointing nowhere
    "unknown_id": _fixed(b'"nobody-here"'),
}
