"""The ACL table grants each principal only its part; signatures hold only for the exact bytes,
the right key and its scope (the broker and the processor apply these: tests/e2e/test_security.py)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from schemas.signing import LEDGER_KEY_ID, KeyScope, SigningError, SigningKey, Verifier, derive_secret, key_for, secret_sha256
from processor.stream import acls

TABLE = acls.bindings(
    requests_topic="wallet.requests",
    results_topic="wallet.results",
    dlq_topic="wallet.requests.dlq",
    consumer_group="cloudwallet-processor",
    principals=acls.Principals(),
)


def granted(principal: str) -> set[tuple[str, str, str]]:
    return {(b.operation.name, b.resource.name, b.name + ("*" if b.pattern is acls.Pattern.PREFIXED else "")) for b in TABLE if b.principal == principal}


def test_writers_may_only_write_requests_and_read_results() -> None:
    for writer in ("User:gateway", "User:client"):
        assert granted(writer) == {("WRITE", "TOPIC", "wallet.requests"), ("READ", "TOPIC", "wallet.results")}


def test_only_the_processor_reads_requests_uses_its_group_and_writes_results_and_dead_letters() -> None:
    assert granted("User:processor") == {
        ("READ", "TOPIC", "wallet.requests"),
        ("CREATE", "TOPIC", "wallet.requests"),
        ("WRITE", "TOPIC", "wallet.requests"),  # the hold sweep's hold.expire, signed with the ledger's own key
        ("READ", "GROUP", "cloudwallet-processor"),
        ("WRITE", "TOPIC", "wallet.results"),
        ("CREATE", "TOPIC", "wallet.results"),
        ("WRITE", "TOPIC", "wallet.requests.dlq"),
        ("CREATE", "TOPIC", "wallet.requests.dlq"),
        ("WRITE", "TOPIC", "wallet.results.reply.*"),
    }
    assert {b.principal for b in TABLE} == {"User:processor", "User:gateway", "User:client"}


MASTER = b"m" * 32


def scope(key: SigningKey, *, project: str | None, revoked: bool = False, master: bytes = MASTER) -> KeyScope:
    return KeyScope(key_id=key.key_id, project_id=project, revoked=revoked, secret_sha256=secret_sha256(derive_secret(master, key.key_id)))


def refusal(
    key: SigningKey | None, value: bytes, *, scope_: KeyScope | None, project: str | None = "a", required: bool = True, sent: bytes | None = None,
    request_type: str = "transaction.run",
) -> str | None:
    headers = dict(key.headers(sent if sent is not None else value)) if key else {}
    return Verifier(master=MASTER, required=required).refusal(
        value=value, key_id=headers.get("signature_key_id"), signed=headers.get("signature"), project_id=project, scope=scope_, request_type=request_type
    )


def test_a_signature_holds_for_its_bytes_its_key_and_its_project() -> None:
    key = key_for(MASTER, "0123456789abcdef")
    value = b'{"type":"transaction.run","project_id":"a"}'
    assert refusal(key, value, scope_=scope(key, project="a")) is None
    assert refusal(key, value, scope_=scope(key, project=None), project="b") is None  # an operator key: any project
    assert "does not match" in refusal(key, value, scope_=scope(key, project="a"), sent=value + b" ")
    assert "may not act in this project" in refusal(key, value, scope_=scope(key, project="a"), project="b")
    assert "revoked" in refusal(key, value, scope_=scope(key, project="a", revoked=True))
    assert "unknown" in refusal(key, value, scope_=None)
    assert "not made with" in refusal(key, value, scope_=scope(key, project="a", master=b"x" * 32))
    assert "not signed" in refusal(None, value, scope_=None)
    assert refusal(None, value, scope_=None, required=False) is None


def test_a_guessed_secret_or_a_malformed_signature_is_refused() -> None:
    key = key_for(MASTER, "0123456789abcdef")
    guessed = SigningKey(key_id=key.key_id, secret=SecretStr("A" * 43))
    value = b"{}"
    assert "does not match" in refusal(guessed, value, scope_=scope(key, project="a"))
    verifier = Verifier(master=MASTER, required=True)
    for signed in (b"", b"zz" * 32, b"0" * 63, "é".encode() * 32):
        assert verifier.refusal(value=value, key_id=key.key_id.encode(), signed=signed, project_id="a", scope=scope(key, project="a"), request_type="x") is not None


def test_the_ledgers_own_key_signs_hold_expire_in_any_project_and_nothing_else() -> None:
    ledger = Verifier(master=MASTER, required=True).ledger_key()
    assert ledger is not None and ledger.key_id == LEDGER_KEY_ID
    value = b'{"type":"hold.expire","project_id":"b"}'
    assert refusal(ledger, value, scope_=None, project="b", request_type="hold.expire") is None  # in no table: the verifier knows it
    assert "signs only hold.expire" in refusal(ledger, value, scope_=None, request_type="transaction.run")
    assert "does not match" in refusal(ledger, value, scope_=None, sent=value + b" ", request_type="hold.expire")
    forged = key_for(b"another deployment's master secret!!", LEDGER_KEY_ID)
    assert "does not match" in refusal(forged, value, scope_=None, request_type="hold.expire")
    assert Verifier(master=None, required=False).ledger_key() is None


def test_tokens_round_trip_and_bad_ones_say_what_a_token_is() -> None:
    key = key_for(MASTER, "0123456789abcdef")
    assert SigningKey.from_token(key.token()) == key
    assert "**********" in repr(key) and key.secret.get_secret_value() not in repr(key)
    for bad in ("", "cws_0123", "cwk_" + key.token()[4:], key.token() + "x"):
        with pytest.raises(SigningError, match="cws_"):
            SigningKey.from_token(bad)


def test_required_signatures_need_a_master_secret() -> None:
    with pytest.raises(SigningError, match="CLOUDWALLET_SIGNING_MASTER_KEY_FILE"):
        Verifier(master=None, required=True)
