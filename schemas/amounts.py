"""Exact money: the ``Amount`` wire type and minor-unit conversion.

On the wire an amount is a decimal string in asset units (``"12.34"``) or a JSON
integer. Binary floats are rejected outright: ``0.1`` has no exact binary form,
so a float may already be wrong by the time we see it.
"""

import re
from decimal import Decimal
from typing import Annotated, Final

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from schemas.limits import MAX_AMOUNT_DIGITS, MAX_AMOUNT_STRING_LEN, MAX_SCALE

FLOAT_REJECTED: Final = "amounts must be decimal strings or integers, not binary floats"

_DECIMAL_RE: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_SCALE_OF_FRACTIONS: Final[dict[int, int]] = {10**k: k for k in range(MAX_SCALE + 1)}

AMOUNT_STRING_PATTERN: Final = r"^[0-9]+(\.[0-9]+)?$"
DECIMAL_STRING_PATTERN: Final = r"^-?[0-9]+(\.[0-9]+)?$"


def _digit_count(value: Decimal) -> int:
    return len(value.as_tuple().digits)


def parse_amount(value: object) -> Decimal:
    """Parse a wire amount exactly. Raises ValueError with a client-readable message."""
    if isinstance(value, bool):
        raise ValueError("amounts must be decimal strings or integers, not booleans")
    if isinstance(value, float):
        raise ValueError(FLOAT_REJECTED)
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("amount must be greater than zero")
        if len(str(value)) > MAX_AMOUNT_DIGITS:
            raise ValueError(f"amount has more than {MAX_AMOUNT_DIGITS} digits")
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("amount must be a finite number")
        parsed = value
    elif isinstance(value, str):
        if len(value) > MAX_AMOUNT_STRING_LEN:
            raise ValueError(f"amount string is longer than {MAX_AMOUNT_STRING_LEN} characters")
        if _DECIMAL_RE.fullmatch(value) is None:
            raise ValueError(
                "amount must be a plain decimal string like '12.34' "
                "(digits, optional fraction; no sign, exponent or whitespace)"
            )
        parsed = Decimal(value)
    else:
        raise ValueError("amounts must be decimal strings or integers")
    if parsed <= 0:
        raise ValueError("amount must be greater than zero")
    if _digit_count(parsed) > MAX_AMOUNT_DIGITS:
        raise ValueError(f"amount has more than {MAX_AMOUNT_DIGITS} significant digits")
    return parsed


def format_decimal(value: Decimal) -> str:
    """Plain decimal string, never an exponent."""
    return format(value, "f")


Amount = Annotated[
    Decimal,
    PlainValidator(parse_amount),
    PlainSerializer(format_decimal, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": AMOUNT_STRING_PATTERN, "maxLength": MAX_AMOUNT_STRING_LEN},
                {"type": "integer", "minimum": 1},
            ],
            "description": (
                "Amount in asset units: a decimal string (e.g. '12.34') or an integer; "
                f"> 0, at most {MAX_AMOUNT_DIGITS} significant digits. Floats are rejected."
            ),
        }
    ),
]


def scale_of(fractions: int) -> int:
    """log10(fractions). Raises ValueError unless fractions is 1, 10, ..., 10**18."""
    scale = _SCALE_OF_FRACTIONS.get(fractions) if type(fractions) is int else None
    if scale is None:
        raise ValueError(f"fractions must be a power of ten between 1 and 10**{MAX_SCALE}")
    return scale


def to_minor_units(amount: Decimal, *, fractions: int) -> int:
    """Exact conversion to minor units (integer arithmetic, no context rounding).

    Raises ValueError if the amount is not a whole number of minor units, i.e. it has
    more (non-zero) decimals than the asset's scale. Trailing zeros are harmless.
    """
    scale = scale_of(fractions)
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError("amount must be a finite number")
    coefficient = int("".join(map(str, digits))) if digits else 0
    shift = exponent + scale
    if shift >= 0:
        minor = coefficient * 10**shift
    else:
        minor, remainder = divmod(coefficient, 10**-shift)
        if remainder:
            raise ValueError(f"amount {format_decimal(amount)} has more than {scale} decimal places")
    return -minor if sign else minor


def from_minor_units(minor: int, *, fractions: int) -> Decimal:
    """Exact Decimal in asset units with exactly the asset's scale (500, 100 -> 5.00)."""
    scale = scale_of(fractions)
    digits = tuple(int(c) for c in str(abs(minor)))
    return Decimal((1 if minor < 0 else 0, digits, -scale))


def format_minor_units(minor: int, *, fractions: int) -> str:
    """Decimal string of a minor-unit integer, with exactly the asset's scale."""
    scale = scale_of(fractions)
    if scale == 0:
        return str(minor)
    text = str(abs(minor)).rjust(scale + 1, "0")
    sign = "-" if minor < 0 else ""
    return f"{sign}{text[:-scale]}.{text[-scale:]}"
