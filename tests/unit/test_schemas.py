"""The wire contract: every request type parses, and the limits hold."""

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.amounts import FLOAT_REJECTED, from_minor_units, format_minor_units, scale_of, to_minor_units
from schemas.errors import ERROR_DESCRIPTIONS, ErrorCode
from schemas.limits import (
    MAX_ASSET_CODE_LEN,
    MAX_ASSET_ID_LEN,
    MAX_CUSTOMER_ID_LEN,
    MAX_DESCRIPTION_LEN,
    MAX_METADATA_KEY_LEN,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LEN,
    MAX_NAME_LEN,
    MAX_OPERATIONS_PER_TRANSACTION,
    MAX_PROJECT_ID_LEN,
    MAX_REFERENCE_ID_LEN,
    MAX_WALLET_ID_LEN,
)
from schemas.requests import REQUEST_TYPES, RequestAdapter, partition_key

ISSUE = {"type": "Issue", "wallet_id": "w1", "amount": "1.50"}

EXAMPLES: dict[str, dict[str, Any]] = {
    "project.create": {"name": "Shop"},
    "project.rename": {"project_id": "p1", "name": "Shop 2"},
    "asset.create": {"project_id": "p1", "asset_id": "USD", "code": "USD", "name": "Dollar", "fractions": 100},
    "asset.rename": {"project_id": "p1", "asset_id": "USD", "name": "US Dollar"},
    "asset.delete": {"project_id": "p1", "asset_id": "USD"},
    "customer.upsert": {"project_id": "p1", "customer_id": "ann@example.com", "name": "Ann"},
    "customer.suspend": {"project_id": "p1", "customer_id": "ann@example.com"},
    "customer.resume": {"project_id": "p1", "customer_id": "ann@example.com"},
    "customer.delete": {"project_id": "p1", "customer_id": "ann@example.com"},
    "wallet.open": {"project_id": "p1", "customer_id": "ann@example.com", "asset_id": "USD", "wallet_id": "w1"},
    "system_wallet.open": {"project_id": "p1", "asset_id": "USD"},
    "wallet.set_status": {"project_id": "p1", "wallet_id": "w1", "status": "Suspended"},
    "wallet.rename": {"project_id": "p1", "wallet_id": "w1", "name": "main"},
    "wallet.set_description": {"project_id": "p1", "wallet_id": "w1", "description": ""},
    "transaction.run": {
        "project_id": "p1",
        "operations": [
            ISSUE,
            {"type": "Transfer", "from_wallet_id": "w1", "to_wallet_id": "w2", "amount": 1},
            {"type": "Redeem", "wallet_id": "w2", "amount": "0.5"},
        ],
    },
    "transaction.reverse": {"project_id": "p1", "transaction_id": "0b9ff8a2-5b0e-5c3d-9a4e-2f1c7d3b6a10"},
    "hold.create": {"project_id": "p1", "wallet_id": "w1", "amount": "2.50", "to_wallet_id": "w2", "expires_at": "2030-01-01T00:00:00Z"},
    "hold.capture": {"project_id": "p1", "hold_id": "h1", "amount": "1.00"},
    "hold.void": {"project_id": "p1", "hold_id": "h1"},
    "hold.expire": {"project_id": "p1", "hold_id": "h1", "reference_id": "~expire/h1"},
}


def body(type_: str, **changes: Any) -> dict[str, Any]:
    return {"type": type_, "reference_id": "ref-1", **EXAMPLES[type_], **changes}


def parse(data: dict[str, Any]) -> Any:
    return RequestAdapter.validate_json(json.dumps(data))


def test_examples_cover_every_request_type() -> None:
    assert set(EXAMPLES) == set(REQUEST_TYPES)


@pytest.mark.parametrize("type_", sorted(EXAMPLES))
def test_every_request_type_parses_and_round_trips(type_: str) -> None:
    request = parse(body(type_))
    assert isinstance(request, REQUEST_TYPES[type_])
    assert request.type == type_
    again = RequestAdapter.validate_json(request.model_dump_json())
    assert again == request


@pytest.mark.parametrize("type_", sorted(EXAMPLES))
def test_extra_fields_are_forbidden(type_: str) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        parse(body(type_, surprise=1))


@pytest.mark.parametrize("type_", sorted(set(EXAMPLES) - {"project.create"}))
def test_project_id_required_except_for_project_create(type_: str) -> None:
    data = body(type_)
    del data["project_id"]
    with pytest.raises(ValidationError):
        parse(data)


@pytest.mark.parametrize("type_", sorted(set(EXAMPLES) - {"hold.expire"}))  # its reference is fixed: below
def test_reference_id_required_and_bounded(type_: str) -> None:
    data = body(type_)
    del data["reference_id"]
    with pytest.raises(ValidationError):
        parse(data)
    with pytest.raises(ValidationError):
        parse(body(type_, reference_id=""))
    with pytest.raises(ValidationError):
        parse(body(type_, reference_id="r" * (MAX_REFERENCE_ID_LEN + 1)))
    assert parse(body(type_, reference_id="r" * MAX_REFERENCE_ID_LEN))


@pytest.mark.parametrize("type_", sorted(set(EXAMPLES) - {"hold.expire"}))
def test_reference_ids_starting_with_a_tilde_are_reserved(type_: str) -> None:
    with pytest.raises(ValidationError, match="reserved"):
        parse(body(type_, reference_id="~expire/h1"))
    assert parse(body(type_, reference_id="a~b"))


def test_hold_expire_reference_is_the_holds_own() -> None:
    assert parse(body("hold.expire")).reference_id == "~expire/h1"
    for wrong in ("ref-1", "~expire/h2", "~expire/h1 ", ""):
        with pytest.raises(ValidationError):
            parse(body("hold.expire", reference_id=wrong))


def test_hold_needs_another_destination_and_an_aware_expiry() -> None:
    with pytest.raises(ValidationError, match="another wallet"):
        parse(body("hold.create", to_wallet_id="w1"))
    with pytest.raises(ValidationError):
        parse(body("hold.create", expires_at="2030-01-01T00:00:00"))  # no time zone: ambiguous


def test_unknown_type_rejected() -> None:
    with pytest.raises(ValidationError):
        parse({"type": "wallet.explode", "reference_id": "r", "project_id": "p"})


@pytest.mark.parametrize("amount", [1.5, 2.0, 0.1])
def test_float_amounts_rejected_with_clear_message(amount: float) -> None:
    data = body("transaction.run", operations=[{**ISSUE, "amount": amount}])
    with pytest.raises(ValidationError, match=FLOAT_REJECTED):
        parse(data)
    with pytest.raises(ValidationError, match=FLOAT_REJECTED):
        RequestAdapter.validate_python(data)


@pytest.mark.parametrize(
    "amount",
    ["0", "0.00", "-1", "+1", "1e3", " 1", "1 ", "1.", ".5", "abc", "", "1,5", 0, -3, True, None, "NaN", "Infinity"],
)
def test_bad_amounts_rejected(amount: object) -> None:
    with pytest.raises(ValidationError):
        parse(body("transaction.run", operations=[{**ISSUE, "amount": amount}]))


def test_amount_digit_limit() -> None:
    ok = "9" * 30
    assert parse(body("transaction.run", operations=[{**ISSUE, "amount": ok}]))
    assert parse(body("transaction.run", operations=[{**ISSUE, "amount": int(ok)}]))
    assert parse(body("transaction.run", operations=[{**ISSUE, "amount": "0." + "0" * 10 + "1" * 30}]))
    for too_many in ["9" * 31, "1." + "0" * 30, 10**30]:
        with pytest.raises(ValidationError, match="30"):
            parse(body("transaction.run", operations=[{**ISSUE, "amount": too_many}]))


def test_amounts_parse_exactly_and_serialize_plainly() -> None:
    request = parse(body("transaction.run", operations=[{**ISSUE, "amount": "0.10"}, {**ISSUE, "amount": 7}]))
    assert request.operations[0].amount == Decimal("0.10")
    dumped = json.loads(request.model_dump_json())
    assert [op["amount"] for op in dumped["operations"]] == ["0.10", "7"]


def test_minor_units_conversion_is_exact() -> None:
    assert to_minor_units(Decimal("12.34"), fractions=100) == 1234
    assert to_minor_units(Decimal("1.500"), fractions=100) == 150  # trailing zeros are harmless
    assert to_minor_units(Decimal("7"), fractions=1) == 7
    big = Decimal("123456789012345678901234567890")
    assert to_minor_units(big, fractions=10**18) == int(big) * 10**18
    with pytest.raises(ValueError, match="more than 2 decimal places"):
        to_minor_units(Decimal("0.001"), fractions=100)
    with pytest.raises(ValueError):
        to_minor_units(Decimal("1"), fractions=50)
    assert from_minor_units(500, fractions=100) == Decimal("5.00")
    assert str(from_minor_units(500, fractions=100)) == "5.00"
    assert format_minor_units(500, fractions=100) == "5.00"
    assert format_minor_units(5, fractions=1000) == "0.005"
    assert format_minor_units(0, fractions=10) == "0.0"
    assert format_minor_units(10**38 - 1, fractions=1) == "9" * 38
    assert [scale_of(10**k) for k in range(19)] == list(range(19))


@pytest.mark.parametrize("fractions", [0, 2, 50, 10**19, -10, True, 100.0, "100"])
def test_fractions_must_be_power_of_ten(fractions: object) -> None:
    with pytest.raises(ValidationError):
        parse(body("asset.create", fractions=fractions))


def test_fractions_default_is_100() -> None:
    data = body("asset.create")
    del data["fractions"]
    assert parse(data).fractions == 100


@pytest.mark.parametrize(
    ("type_", "field", "limit"),
    [
        ("project.create", "project_id", MAX_PROJECT_ID_LEN),
        ("asset.create", "asset_id", MAX_ASSET_ID_LEN),
        ("asset.create", "code", MAX_ASSET_CODE_LEN),
        ("wallet.rename", "wallet_id", MAX_WALLET_ID_LEN),
        ("wallet.rename", "name", MAX_NAME_LEN),
        ("project.create", "name", MAX_NAME_LEN),
        ("customer.upsert", "customer_id", MAX_CUSTOMER_ID_LEN),
        ("customer.upsert", "description", MAX_DESCRIPTION_LEN),
    ],
)
def test_length_limits(type_: str, field: str, limit: int) -> None:
    assert getattr(parse(body(type_, **{field: "a" * limit})), field) == "a" * limit
    with pytest.raises(ValidationError, match="at most"):
        parse(body(type_, **{field: "a" * (limit + 1)}))


@pytest.mark.parametrize("bad", ["", "a b", "a/b", "ü", "a\n"])
def test_client_id_pattern(bad: str) -> None:
    for type_, field in [("project.rename", "project_id"), ("asset.rename", "asset_id"), ("wallet.rename", "wallet_id")]:
        with pytest.raises(ValidationError):
            parse(body(type_, **{field: bad}))


def test_client_ids_allow_the_documented_characters() -> None:
    assert parse(body("wallet.rename", wallet_id="a.B-9_:x@y+z")).wallet_id == "a.B-9_:x@y+z"


def test_customer_id_is_any_printable_string() -> None:
    for ok in ["ann@example.com", "42", "Jürgen Müller", "a/b c"]:
        assert parse(body("customer.upsert", customer_id=ok)).customer_id == ok
    for bad in ["", " ", "a\tb", "a\x00"]:
        with pytest.raises(ValidationError):
            parse(body("customer.upsert", customer_id=bad))


def test_ids_are_not_coerced_from_numbers() -> None:
    with pytest.raises(ValidationError):
        parse(body("customer.upsert", customer_id=42))
    with pytest.raises(ValidationError):
        parse(body("wallet.rename", wallet_id=7))
    with pytest.raises(ValidationError):
        parse(body("project.rename", name=5))


def test_transfer_to_self_rejected() -> None:
    op = {"type": "Transfer", "from_wallet_id": "w1", "to_wallet_id": "w1", "amount": "1"}
    with pytest.raises(ValidationError, match="two different wallets"):
        parse(body("transaction.run", operations=[op]))


def test_operation_count_limits() -> None:
    with pytest.raises(ValidationError):
        parse(body("transaction.run", operations=[]))
    assert parse(body("transaction.run", operations=[ISSUE] * MAX_OPERATIONS_PER_TRANSACTION))
    with pytest.raises(ValidationError):
        parse(body("transaction.run", operations=[ISSUE] * (MAX_OPERATIONS_PER_TRANSACTION + 1)))


def test_wallet_status_values() -> None:
    for status in ["Open", "Suspended", "Closed"]:
        assert parse(body("wallet.set_status", status=status)).status == status
    with pytest.raises(ValidationError):
        parse(body("wallet.set_status", status="Frozen"))


# --- metadata -----------------------------------------------------------------------------

WITH_METADATA = ("transaction.run", "transaction.reverse", "hold.create", "wallet.open", "system_wallet.open", "wallet.rename", "customer.upsert")


@pytest.mark.parametrize("type_", WITH_METADATA)
def test_metadata_is_optional_where_the_contract_takes_it(type_: str) -> None:
    assert parse(body(type_)).metadata is None  # absent: None (an upsert or rename then keeps what there is)
    assert parse(body(type_, metadata={})).metadata == {}
    assert parse(body(type_, metadata={"order": "123"})).metadata == {"order": "123"}


@pytest.mark.parametrize("type_", sorted(set(EXAMPLES) - set(WITH_METADATA)))
def test_no_other_request_takes_metadata(type_: str) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        parse(body(type_, metadata={"order": "123"}))


def test_operations_take_no_metadata() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        parse(body("transaction.run", operations=[{**ISSUE, "metadata": {"a": "1"}}]))


def test_metadata_limits() -> None:
    most = {f"k{n}": "v" for n in range(MAX_METADATA_KEYS)}
    assert parse(body("transaction.run", metadata=most)).metadata == most
    with pytest.raises(ValidationError, match=f"at most {MAX_METADATA_KEYS} items"):
        parse(body("transaction.run", metadata={**most, "one-more": "v"}))
    longest = {"k" * MAX_METADATA_KEY_LEN: "v" * MAX_METADATA_VALUE_LEN}
    assert parse(body("transaction.run", metadata=longest)).metadata == longest
    with pytest.raises(ValidationError, match=f"at most {MAX_METADATA_KEY_LEN} characters"):
        parse(body("transaction.run", metadata={"k" * (MAX_METADATA_KEY_LEN + 1): "v"}))
    with pytest.raises(ValidationError, match=f"at most {MAX_METADATA_VALUE_LEN} characters"):
        parse(body("transaction.run", metadata={"k": "v" * (MAX_METADATA_VALUE_LEN + 1)}))


def test_metadata_keys_are_a_few_plain_characters() -> None:
    assert parse(body("customer.upsert", metadata={"a.B-9_:x": ""})).metadata == {"a.B-9_:x": ""}
    for bad in ["", "a b", "a/b", "ü", "a\n", "a@b", "a\x00"]:
        with pytest.raises(ValidationError):
            parse(body("customer.upsert", metadata={bad: "v"}))


def test_metadata_values_are_storable_strings() -> None:
    assert parse(body("wallet.open", metadata={"name": "Jürgen 😀 / tab\t ok"})).metadata == {"name": "Jürgen 😀 / tab\t ok"}
    with pytest.raises(ValidationError, match="NUL"):
        parse(body("wallet.open", metadata={"k": "a\x00b"}))
    with pytest.raises(ValidationError):  # a lone surrogate (what a JSON `\ud800` decodes to) is not text
        RequestAdapter.validate_python(body("wallet.open", metadata={"k": "a\ud800"}))
    for not_text in (1, 1.5, True, None, ["a"], {"b": "c"}):
        with pytest.raises(ValidationError, match="valid string"):
            parse(body("wallet.open", metadata={"k": not_text}))
    with pytest.raises(ValidationError):
        parse(body("wallet.open", metadata=["k", "v"]))


def test_every_error_code_is_described() -> None:
    assert set(ERROR_DESCRIPTIONS) == set(ErrorCode)
    assert all(ERROR_DESCRIPTIONS[c] for c in ErrorCode)


# --- partition keys ---------------------------------------------------------------------


def key_of(type_: str, **changes: Any) -> str:
    return partition_key(parse(body(type_, **changes)))


def test_partition_key_wallet_requests() -> None:
    assert key_of("wallet.set_status") == "p1/w1"
    assert key_of("wallet.rename") == "p1/w1"
    assert key_of("wallet.set_description") == "p1/w1"
    assert key_of("wallet.open") == "p1/w1"
    assert key_of("system_wallet.open") == "p1/ref-1"
    assert key_of("system_wallet.open", wallet_id="fees") == "p1/fees"


def test_partition_key_transaction_first_debited_else_first_credited() -> None:
    transfer = {"type": "Transfer", "from_wallet_id": "a", "to_wallet_id": "b", "amount": "1"}
    redeem = {"type": "Redeem", "wallet_id": "c", "amount": "1"}
    issue = {"type": "Issue", "wallet_id": "d", "amount": "1"}
    assert key_of("transaction.run", operations=[issue, transfer, redeem]) == "p1/a"
    assert key_of("transaction.run", operations=[issue, redeem, transfer]) == "p1/c"
    assert key_of("transaction.run", operations=[issue, {**issue, "wallet_id": "e"}]) == "p1/d"


def test_partition_key_customer_asset_project_requests() -> None:
    for type_ in ["customer.upsert", "customer.suspend", "customer.resume", "customer.delete"]:
        assert key_of(type_) == "p1/ann@example.com"
    assert key_of("asset.create") == "p1/USD"
    data = body("asset.create")
    del data["asset_id"]
    assert partition_key(parse(data)) == "p1/ref-1"
    assert key_of("asset.rename") == "p1/USD"
    assert key_of("asset.delete") == "p1/USD"
    assert key_of("project.create") == "ref-1"
    assert key_of("project.create", project_id="p9") == "p9/p9"
    assert key_of("project.rename") == "p1/p1"


def test_operations_are_echoed_as_validated_amounts_as_the_decimal_string_of_their_value():
    from schemas.requests import RequestAdapter

    sent = ["007", 7, "1.500", "0.10"]
    request = RequestAdapter.validate_python(
        {"type": "transaction.run", "project_id": "p", "reference_id": "r", "operations": [{"type": "Issue", "wallet_id": "w", "amount": a} for a in sent]}
    )
    echoed = [operation["amount"] for operation in RequestAdapter.dump_python(request, mode="json")["operations"]]
    assert echoed == ["7", "7", "1.500", "0.10"]
