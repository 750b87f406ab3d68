"""The ledger engine, example by example: the seeds' W1/W2 case and every error code."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from processor.ledger import (
    Wallet,
    apply_batch,
    derive_entity_id,
    derive_transaction_id,
    state_keys,
)
from schemas.errors import ErrorCode
from schemas.limits import MAX_BALANCE_MINOR
from schemas.results import Result
from schemas.states import CustomerStatus, EntryType, Status, WalletStatus

from .memstore import MemoryStore, req

P = "p1"


def issue(wallet: str, amount: Any) -> dict[str, Any]:
    return {"type": "Issue", "wallet_id": wallet, "amount": amount}


def redeem(wallet: str, amount: Any) -> dict[str, Any]:
    return {"type": "Redeem", "wallet_id": wallet, "amount": amount}


def transfer(source: str, target: str, amount: Any) -> dict[str, Any]:
    return {"type": "Transfer", "from_wallet_id": source, "to_wallet_id": target, "amount": amount}


class Ledger:
    """A MemoryStore with a fresh reference ID per call."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.counter = 0

    def __call__(self, type_: str, *, reference_id: str | None = None, **fields: Any) -> Result:
        self.counter += 1
        fields.setdefault("project_id", P)
        return self.store.run1(type=type_, reference_id=reference_id or f"r{self.counter}", **fields)

    def tx(self, *operations: dict[str, Any], **fields: Any) -> Result:
        return self("transaction.run", operations=list(operations), **fields)

    def balance(self, wallet: str) -> int:
        return self.store.balance(P, wallet)

    def status(self, wallet: str) -> WalletStatus:
        return self.store.wallets[(P, wallet)].status


def ok(result: Result) -> Result:
    assert result.status == Status.Completed, result.error
    assert result.error is None
    return result


def failed(result: Result, code: ErrorCode, operation_index: int | None = None) -> Result:
    assert result.status == Status.Failed
    assert result.error is not None
    assert result.error.code == code, result.error
    assert result.error.operation_index == operation_index
    return result


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger()
    ok(ledger("project.create", name="Project"))
    ok(ledger("asset.create", asset_id="pts", code="PTS", name="Points", fractions=1))
    ok(ledger("asset.create", asset_id="usd", code="USD", name="Dollar", fractions=100))
    ok(ledger("customer.upsert", customer_id="ann"))
    ok(ledger("wallet.open", customer_id="ann", asset_id="pts", wallet_id="W1"))
    ok(ledger("wallet.open", customer_id="ann", asset_id="pts", wallet_id="W2"))
    ok(ledger("system_wallet.open", asset_id="usd", wallet_id="U1"))
    ok(ledger("system_wallet.open", asset_id="usd", wallet_id="U2"))
    return ledger


# --- the seeds' example -------------------------------------------------------------------


def test_seed_example_transfer_before_issue_fails_and_changes_nothing(ledger: Ledger) -> None:
    ok(ledger.tx(issue("W1", 5), issue("W2", 7)))
    entries_before = len(ledger.store.entries)
    result = failed(ledger.tx(transfer("W1", "W2", 11), issue("W1", 6)), ErrorCode.InsufficientFunds, 0)
    assert (ledger.balance("W1"), ledger.balance("W2")) == (5, 7)
    assert len(ledger.store.entries) == entries_before
    assert result.transaction is not None
    assert result.transaction.status == Status.Failed
    assert result.transaction.entries == []
    assert result.transaction.error == result.error
    record = ledger.store.transactions[(P, result.transaction.transaction_id)]
    assert record.status == Status.Failed and record.error is not None
    assert record.error.operation_index == 0


def test_seed_example_issue_before_transfer_completes(ledger: Ledger) -> None:
    ok(ledger.tx(issue("W1", 5), issue("W2", 7)))
    result = ok(ledger.tx(issue("W1", 6), transfer("W1", "W2", 11)))
    assert (ledger.balance("W1"), ledger.balance("W2")) == (0, 18)
    assert result.transaction is not None
    entries = [(e.wallet_id, e.operation_index, e.type, e.amount, e.balance_after) for e in result.transaction.entries]
    assert entries == [
        ("W1", 0, EntryType.Issue, "6", "11"),
        ("W1", 1, EntryType.Debit, "11", "0"),
        ("W2", 1, EntryType.Credit, "11", "18"),
    ]
    stored = [(e.wallet_id, e.entry_type, e.amount, e.balance_after) for e in ledger.store.entries[-3:]]
    assert stored == [("W1", EntryType.Issue, 6, 11), ("W1", EntryType.Debit, 11, 0), ("W2", EntryType.Credit, 11, 18)]


def test_amounts_formatted_with_asset_scale(ledger: Ledger) -> None:
    result = ok(ledger.tx(issue("U1", "5"), transfer("U1", "U2", "0.5")))
    assert result.transaction is not None
    assert [(e.amount, e.balance_after) for e in result.transaction.entries] == [
        ("5.00", "5.00"),
        ("0.50", "4.50"),
        ("0.50", "0.50"),
    ]
    assert ledger.balance("U1") == 450
    view = ok(ledger("wallet.rename", wallet_id="U1", name="x")).wallet
    assert view is not None and view.balance == "4.50"


def test_redeem(ledger: Ledger) -> None:
    ok(ledger.tx(issue("U1", "1.00")))
    failed(ledger.tx(redeem("U1", "1.01")), ErrorCode.InsufficientFunds, 0)
    ok(ledger.tx(redeem("U1", "0.25")))
    assert ledger.balance("U1") == 75
    assert ledger.store.entries[-1].entry_type == EntryType.Redeem


# --- reference IDs ----------------------------------------------------------------------


def test_duplicate_reference_id_changes_nothing_and_returns_original(ledger: Ledger) -> None:
    first = ok(ledger.tx(issue("W1", 5), reference_id="pay-1"))
    again = failed(ledger.tx(issue("W1", 5), reference_id="pay-1"), ErrorCode.DuplicateReferenceId)
    assert again.original == first
    assert ledger.balance("W1") == 5
    # unique across request types too
    other = failed(ledger("wallet.rename", wallet_id="W1", name="n", reference_id="pay-1"), ErrorCode.DuplicateReferenceId)
    assert other.original == first
    assert ledger.store.wallets[(P, "W1")].name == ""


def test_failed_requests_spend_their_reference(ledger: Ledger) -> None:
    first = failed(ledger("wallet.rename", wallet_id="nope", name="n", reference_id="x"), ErrorCode.WalletNotFound)
    assert failed(ledger("wallet.rename", wallet_id="W1", name="n", reference_id="x"), ErrorCode.DuplicateReferenceId).original == first


def test_project_not_found_does_not_spend_reference(ledger: Ledger) -> None:
    failed(ledger("asset.create", project_id="ghost", asset_id="a", code="A", name="A", reference_id="x"), ErrorCode.ProjectNotFound)
    assert ("ghost", "x") not in ledger.store.references
    ok(ledger("project.create", project_id="ghost", name="G", reference_id="y"))
    ok(ledger("asset.create", project_id="ghost", asset_id="a", code="A", name="A", reference_id="x"))


def test_duplicates_within_one_batch(ledger: Ledger) -> None:
    requests = [req(type="transaction.run", project_id=P, reference_id="same", operations=[issue("W1", 1)])] * 3
    results = ledger.store.run(requests)
    assert [r.status for r in results] == [Status.Completed, Status.Failed, Status.Failed]
    assert results[1].original == results[0]
    assert ledger.balance("W1") == 1


def test_reference_ids_are_per_project(ledger: Ledger) -> None:
    ok(ledger("project.create", project_id="p2", name="Two", reference_id="shared"))
    ok(ledger("asset.create", project_id="p2", asset_id="a", code="A", name="A", reference_id="shared2"))
    ok(ledger("asset.create", project_id=P, asset_id="a", code="A", name="A", reference_id="shared2"))


# --- derived IDs --------------------------------------------------------------------------


def test_generated_ids_are_derived_and_stable() -> None:
    ledger = Ledger()
    project = ok(ledger("project.create", project_id=None, name="P", reference_id="mk")).project
    assert project is not None
    expected = derive_entity_id(kind="project", project_id="", reference_id="mk")
    assert project.project_id == expected and len(expected) == 26
    # redelivery: same derived ID, so the same reference key -> DuplicateReferenceId
    again = failed(ledger("project.create", project_id=None, name="P", reference_id="mk"), ErrorCode.DuplicateReferenceId)
    assert again.project_id == expected
    asset = ok(ledger("asset.create", project_id=expected, code="C", name="C", reference_id="a")).asset
    assert asset is not None
    assert asset.asset_id == derive_entity_id(kind="asset", project_id=expected, reference_id="a")
    wallet = ok(ledger("system_wallet.open", project_id=expected, asset_id=asset.asset_id, reference_id="w")).wallet
    assert wallet is not None
    assert wallet.wallet_id == derive_entity_id(kind="wallet", project_id=expected, reference_id="w")
    tx = ok(ledger.tx(issue(wallet.wallet_id, 1), project_id=expected, reference_id="t")).transaction
    assert tx is not None
    assert tx.transaction_id == derive_transaction_id(project_id=expected, reference_id="t")
    # the derived IDs satisfy the client ID rules
    req(type="wallet.rename", project_id=expected, reference_id="z", wallet_id=wallet.wallet_id, name="n")
    req(type="asset.rename", project_id=expected, reference_id="z", asset_id=asset.asset_id, name="n")


def test_apply_batch_does_not_mutate_state_and_is_deterministic(ledger: Ledger) -> None:
    ok(ledger.tx(issue("W1", 5)))
    requests = [
        req(type="transaction.run", project_id=P, reference_id="t1", operations=[transfer("W1", "W2", 2)]),
        req(type="customer.suspend", project_id=P, customer_id="ann", reference_id="t2"),
        req(type="system_wallet.open", project_id=P, asset_id="usd", reference_id="t3"),
    ]
    state = ledger.store.load(requests)
    snapshot = {k: (w.balance, w.status) for k, w in state.wallets.items()}
    now = datetime(2030, 1, 1, tzinfo=UTC)
    one = apply_batch(requests=requests, state=state, now=now)
    two = apply_batch(requests=requests, state=state, now=now)
    assert {k: (w.balance, w.status) for k, w in state.wallets.items()} == snapshot
    assert state.references == {}
    assert one.results == two.results
    assert one.entries == two.entries
    assert one.wallets_upserted == two.wallets_upserted


# --- results serialize to the contract ----------------------------------------------------


def test_results_round_trip_through_json(ledger: Ledger) -> None:
    ok(ledger.tx(issue("W1", 5)))
    results = [
        ledger.tx(transfer("W1", "W2", 2), description="d"),
        ledger.tx(transfer("W1", "W2", 200)),
        ledger("customer.suspend", customer_id="ann"),
        ledger("project.rename", name="x"),
        ledger("wallet.rename", wallet_id="W1", name="x", reference_id="r1"),
    ]
    for result in results:
        assert Result.model_validate_json(result.model_dump_json()) == result


# --- every error code the engine can produce ------------------------------------------------


def test_project_errors(ledger: Ledger) -> None:
    failed(ledger("project.create", project_id=P, name="again"), ErrorCode.ProjectAlreadyExists)
    failed(ledger("project.rename", project_id="nope", name="x"), ErrorCode.ProjectNotFound)
    renamed = ok(ledger("project.rename", name="New"))
    assert renamed.project is not None and renamed.project.name == "New"
    assert ledger.store.projects[P].name == "New"


def test_asset_errors(ledger: Ledger) -> None:
    failed(ledger("asset.create", asset_id="pts", code="X", name="X"), ErrorCode.AssetAlreadyExists)
    failed(ledger("asset.rename", asset_id="nope", name="X"), ErrorCode.AssetNotFound)
    failed(ledger("asset.delete", asset_id="nope"), ErrorCode.AssetNotFound)
    failed(ledger("asset.delete", asset_id="pts"), ErrorCode.AssetInUse)
    ok(ledger("asset.create", asset_id="eur", code="EUR", name="Euro"))
    ok(ledger("asset.rename", asset_id="eur", name="Euro!"))
    ok(ledger("asset.delete", asset_id="eur"))
    assert (P, "eur") not in ledger.store.assets


def test_asset_in_use_is_sticky(ledger: Ledger) -> None:
    ok(ledger("asset.create", asset_id="eur", code="EUR", name="Euro"))
    ok(ledger("system_wallet.open", asset_id="eur", wallet_id="E"))
    assert ledger.store.assets[(P, "eur")].in_use
    ok(ledger("wallet.set_status", wallet_id="E", status="Closed"))
    failed(ledger("asset.delete", asset_id="eur"), ErrorCode.AssetInUse)


def test_customer_upsert_inserts_then_updates_given_fields(ledger: Ledger) -> None:
    created = ok(ledger("customer.upsert", customer_id="bob", name="Bob", description="d")).customer
    assert created is not None and created.status == CustomerStatus.Active
    ok(ledger("customer.suspend", customer_id="bob"))
    updated = ok(ledger("customer.upsert", customer_id="bob", name="Robert")).customer
    assert updated is not None
    assert (updated.name, updated.description, updated.status) == ("Robert", "d", CustomerStatus.Suspended)


def test_customer_errors(ledger: Ledger) -> None:
    for type_ in ["customer.suspend", "customer.resume", "customer.delete"]:
        failed(ledger(type_, customer_id="nobody"), ErrorCode.CustomerNotFound)
    failed(ledger("customer.delete", customer_id="ann"), ErrorCode.CustomerHasOpenWallets)
    ok(ledger("wallet.set_status", wallet_id="W1", status="Closed"))
    ok(ledger("wallet.set_status", wallet_id="W2", status="Suspended"))
    failed(ledger("customer.delete", customer_id="ann"), ErrorCode.CustomerHasOpenWallets)
    ok(ledger("wallet.set_status", wallet_id="W2", status="Closed"))
    ok(ledger("customer.delete", customer_id="ann"))
    assert (P, "ann") not in ledger.store.customers
    assert ledger.store.wallets[(P, "W1")].customer_id == "ann"  # closed wallets keep their history
    failed(ledger("wallet.open", customer_id="ann", asset_id="pts"), ErrorCode.CustomerNotFound)


def test_customer_suspend_suspends_open_wallets_and_resume_does_not_reopen(ledger: Ledger) -> None:
    ok(ledger("wallet.set_status", wallet_id="W2", status="Closed"))
    result = ok(ledger("customer.suspend", customer_id="ann"))
    assert result.customer is not None and result.customer.status == CustomerStatus.Suspended
    assert [w.wallet_id for w in result.wallets or []] == ["W1"]
    assert (ledger.status("W1"), ledger.status("W2")) == (WalletStatus.Suspended, WalletStatus.Closed)
    failed(ledger("wallet.open", customer_id="ann", asset_id="pts"), ErrorCode.CustomerSuspended)
    failed(ledger("wallet.set_status", wallet_id="W1", status="Open"), ErrorCode.CustomerSuspended)
    ok(ledger("customer.resume", customer_id="ann"))
    assert ledger.status("W1") == WalletStatus.Suspended
    ok(ledger("wallet.set_status", wallet_id="W1", status="Open"))


def test_wallet_open_errors(ledger: Ledger) -> None:
    failed(ledger("wallet.open", customer_id="ann", asset_id="nope"), ErrorCode.AssetNotFound)
    failed(ledger("system_wallet.open", asset_id="nope"), ErrorCode.AssetNotFound)
    failed(ledger("wallet.open", customer_id="nobody", asset_id="pts"), ErrorCode.CustomerNotFound)
    failed(ledger("wallet.open", customer_id="ann", asset_id="pts", wallet_id="W1"), ErrorCode.WalletAlreadyExists)
    failed(ledger("system_wallet.open", asset_id="pts", wallet_id="W1"), ErrorCode.WalletAlreadyExists)
    opened = ok(ledger("wallet.open", customer_id="ann", asset_id="usd", name="n", description="d")).wallet
    assert opened is not None
    assert (opened.status, opened.balance, opened.customer_id, opened.name) == (WalletStatus.Open, "0.00", "ann", "n")


def test_wallet_status_errors(ledger: Ledger) -> None:
    failed(ledger("wallet.set_status", wallet_id="nope", status="Closed"), ErrorCode.WalletNotFound)
    failed(ledger("wallet.rename", wallet_id="nope", name="x"), ErrorCode.WalletNotFound)
    failed(ledger("wallet.set_description", wallet_id="nope", description="x"), ErrorCode.WalletNotFound)
    ok(ledger.tx(issue("W1", 1)))
    failed(ledger("wallet.set_status", wallet_id="W1", status="Closed"), ErrorCode.WalletNotEmpty)
    ok(ledger("wallet.set_status", wallet_id="W1", status="Suspended"))
    ok(ledger("wallet.set_status", wallet_id="W1", status="Suspended"))  # same status: no-op
    failed(ledger("wallet.set_status", wallet_id="W1", status="Closed"), ErrorCode.WalletNotEmpty)
    ok(ledger("wallet.set_status", wallet_id="W1", status="Open"))
    ok(ledger.tx(redeem("W1", 1)))
    ok(ledger("wallet.set_status", wallet_id="W1", status="Closed"))
    failed(ledger("wallet.set_status", wallet_id="W1", status="Open"), ErrorCode.WalletClosed)
    failed(ledger("wallet.set_status", wallet_id="W1", status="Suspended"), ErrorCode.WalletClosed)
    ok(ledger("wallet.set_status", wallet_id="W1", status="Closed"))  # same status: no-op
    # metadata stays editable on a closed wallet
    ok(ledger("wallet.rename", wallet_id="W1", name="old"))
    ok(ledger("wallet.set_description", wallet_id="W1", description="closed in 2025"))
    assert ledger.store.wallets[(P, "W1")].description == "closed in 2025"


def test_transaction_wallet_errors(ledger: Ledger) -> None:
    ok(ledger.tx(issue("W1", 5), issue("U1", 5)))
    failed(ledger.tx(issue("W1", 1), issue("nope", 1)), ErrorCode.WalletNotFound, 1)
    failed(ledger.tx(transfer("W1", "nope", 1)), ErrorCode.WalletNotFound, 0)
    failed(ledger.tx(transfer("W1", "U1", 1)), ErrorCode.AssetMismatch, 0)
    ok(ledger("wallet.set_status", wallet_id="W2", status="Suspended"))
    failed(ledger.tx(issue("W1", 1), transfer("W1", "W2", 1)), ErrorCode.WalletNotOpen, 1)
    failed(ledger.tx(redeem("W2", 1)), ErrorCode.WalletNotOpen, 0)
    ok(ledger("wallet.set_status", wallet_id="W2", status="Closed"))
    failed(ledger.tx(issue("W2", 1)), ErrorCode.WalletClosed, 0)
    failed(ledger.tx(transfer("W2", "W1", 1)), ErrorCode.WalletClosed, 0)
    assert (ledger.balance("W1"), ledger.balance("U1")) == (5, 500)


def test_transaction_scale_validation(ledger: Ledger) -> None:
    failed(ledger.tx(issue("U1", "1.00"), issue("U1", "0.001")), ErrorCode.ValidationError, 1)
    failed(ledger.tx(issue("W1", "0.5")), ErrorCode.ValidationError, 0)
    ok(ledger.tx(issue("W1", "2.000")))
    assert ledger.balance("W1") == 2 and ledger.balance("U1") == 0


def test_balance_limit(ledger: Ledger) -> None:
    ok(ledger("asset.create", asset_id="wei", code="WEI", name="Wei", fractions=10**18))
    ok(ledger("system_wallet.open", asset_id="wei", wallet_id="E"))
    half = "5" + "0" * 19  # 5e19 units = 5e37 minor units
    failed(ledger.tx(issue("E", half), issue("E", half)), ErrorCode.BalanceLimitExceeded, 1)
    assert ledger.balance("E") == 0
    ok(ledger.tx(issue("E", half), issue("E", "4" + "9" * 19)))
    assert ledger.balance("E") == 10**38 - 10**18


def test_balance_limit_on_transfer_and_issue() -> None:
    ledger = Ledger()
    ok(ledger("project.create", name="P"))
    ok(ledger("asset.create", asset_id="a", code="A", name="A", fractions=1))
    ok(ledger("system_wallet.open", asset_id="a", wallet_id="x"))
    ok(ledger("system_wallet.open", asset_id="a", wallet_id="y"))
    store = ledger.store
    for key in [(P, "x"), (P, "y")]:  # no 30-digit amount reaches the limit: seed the balances
        w = store.wallets[key]
        store.wallets[key] = Wallet(**{**{f: getattr(w, f) for f in w.__slots__}, "balance": MAX_BALANCE_MINOR})
    failed(ledger.tx(issue("x", 1)), ErrorCode.BalanceLimitExceeded, 0)
    failed(ledger.tx(redeem("x", 1), transfer("x", "y", 1)), ErrorCode.BalanceLimitExceeded, 1)
    ok(ledger.tx(redeem("y", 5), transfer("x", "y", 5)))
    assert store.balance(P, "y") == MAX_BALANCE_MINOR


def test_unexpected_exception_fails_one_request_with_internal_error(ledger: Ledger) -> None:
    requests = [
        req(type="transaction.run", project_id=P, reference_id="a", operations=[issue("W1", 3)]),
        req(type="customer.suspend", project_id=P, customer_id="ann", reference_id="b"),
        req(type="transaction.run", project_id=P, reference_id="c", operations=[issue("U1", 3)]),
    ]
    state = ledger.store.load(requests)
    del state.customer_wallets[(P, "ann")]  # a loader bug
    outcome = apply_batch(requests=requests, state=state, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert [r.status for r in outcome.results] == [Status.Completed, Status.Failed, Status.Completed]
    failed(outcome.results[1], ErrorCode.InternalError)
    assert [r.reference_id for r in outcome.references] == ["a", "c"]  # InternalError spends nothing
    assert [(i, type(e)) for i, e in outcome.faults] == [(1, KeyError)]
    assert outcome.customers_upserted == []
    assert {w.wallet_id for w in outcome.wallets_upserted} == {"W1", "U1"}


def test_internal_error_mid_request_rolls_back_its_changes(ledger: Ledger) -> None:
    ok(ledger("customer.upsert", customer_id="bob"))
    ok(ledger("wallet.open", customer_id="bob", asset_id="pts", wallet_id="B1"))
    ok(ledger("wallet.open", customer_id="bob", asset_id="pts", wallet_id="B2"))
    requests = [req(type="customer.suspend", project_id=P, customer_id="bob", reference_id="s")]
    state = ledger.store.load(requests)
    del state.assets[(P, "pts")]  # the view of the first suspended wallet raises after its put
    outcome = apply_batch(requests=requests, state=state, now=datetime(2030, 1, 1, tzinfo=UTC))
    failed(outcome.results[0], ErrorCode.InternalError)
    assert outcome.wallets_upserted == [] and outcome.customers_upserted == [] and outcome.references == []


# --- change set -----------------------------------------------------------------------------


def test_change_set_lists_each_changed_wallet_once(ledger: Ledger) -> None:
    requests = [
        req(type="transaction.run", project_id=P, reference_id=f"t{i}", operations=[issue("W1", 1), transfer("W1", "W2", 1)])
        for i in range(5)
    ]
    outcome = apply_batch(requests=requests, state=ledger.store.load(requests), now=datetime(2030, 1, 1, tzinfo=UTC))
    assert [w.wallet_id for w in outcome.wallets_upserted] == ["W1", "W2"]
    assert [w.balance for w in outcome.wallets_upserted] == [0, 5]
    assert len(outcome.entries) == 15 and len(outcome.transactions) == 5 and len(outcome.references) == 5


def test_create_and_delete_in_one_batch_nets_out(ledger: Ledger) -> None:
    requests = [
        req(type="asset.create", project_id=P, reference_id="a1", asset_id="tmp", code="T", name="T"),
        req(type="asset.delete", project_id=P, reference_id="a2", asset_id="tmp"),
        req(type="asset.delete", project_id=P, reference_id="a3", asset_id="usd"),
        req(type="customer.upsert", project_id=P, reference_id="c1", customer_id="zed"),
        req(type="customer.delete", project_id=P, reference_id="c2", customer_id="zed"),
    ]
    outcome = apply_batch(requests=requests, state=ledger.store.load(requests), now=datetime(2030, 1, 1, tzinfo=UTC))
    assert [r.status for r in outcome.results] == [Status.Completed, Status.Completed, Status.Failed, Status.Completed, Status.Completed]
    assert outcome.assets_upserted == [] and outcome.assets_deleted == []
    assert outcome.customers_upserted == [] and outcome.customers_deleted == []


def test_wallet_opened_in_batch_blocks_customer_delete_in_same_batch(ledger: Ledger) -> None:
    results = ledger.store.run(
        [
            req(type="customer.upsert", project_id=P, reference_id="c1", customer_id="new"),
            req(type="wallet.open", project_id=P, reference_id="c2", customer_id="new", asset_id="pts"),
            req(type="customer.delete", project_id=P, reference_id="c3", customer_id="new"),
            req(type="customer.suspend", project_id=P, reference_id="c4", customer_id="new"),
        ]
    )
    assert [r.status for r in results] == [Status.Completed, Status.Completed, Status.Failed, Status.Completed]
    failed(results[2], ErrorCode.CustomerHasOpenWallets)
    assert [w.status for w in results[3].wallets or []] == [WalletStatus.Suspended]


# --- keys -------------------------------------------------------------------------------------


def test_state_keys() -> None:
    requests = [
        req(type="project.create", reference_id="r0", name="P"),
        req(type="transaction.run", project_id=P, reference_id="r1", operations=[transfer("b", "a", 1), issue("c", 1)]),
        req(type="wallet.open", project_id=P, reference_id="r2", customer_id="ann", asset_id="usd"),
        req(type="customer.delete", project_id=P, reference_id="r3", customer_id="bob"),
        req(type="customer.resume", project_id=P, reference_id="r4", customer_id="cid"),
        req(type="asset.delete", project_id="p2", reference_id="r5", asset_id="eur"),
        req(type="wallet.set_status", project_id=P, reference_id="r6", wallet_id="z", status="Open"),
    ]
    keys = state_keys(requests)
    derived_project = derive_entity_id(kind="project", project_id="", reference_id="r0")
    derived_wallet = derive_entity_id(kind="wallet", project_id=P, reference_id="r2")
    assert keys.project_ids == tuple(sorted([derived_project, P, "p2"]))
    assert keys.wallet_keys == tuple(sorted([(P, "a"), (P, "b"), (P, "c"), (P, derived_wallet), (P, "z")]))
    assert keys.locked_asset_keys == ((P, "usd"), ("p2", "eur"))
    assert keys.asset_keys == keys.locked_asset_keys
    assert keys.locked_customer_keys == ((P, "ann"), (P, "bob"), (P, "cid"))
    assert keys.customer_keys == keys.locked_customer_keys
    assert keys.customers_with_wallets == ((P, "bob"),)
    assert keys.locked_project_ids == (derived_project,)
    assert (derived_project, "r0") in keys.reference_keys and ("p2", "r5") in keys.reference_keys
    assert len(keys.reference_keys) == 7


def test_hot_path_wallet_copy_keeps_every_field() -> None:
    from dataclasses import fields, replace

    from processor.ledger.engine import _with_amounts

    wallet = Wallet(
        project_id="p", wallet_id="w", asset_id="a", customer_id="c", name="n", description="d",
        status=WalletStatus.Suspended, balance=3, created_at=datetime(2030, 1, 1, tzinfo=UTC), metadata={"k": "v"},
    )
    copied = _with_amounts(wallet, balance=9, held=4)
    assert copied == replace(wallet, balance=9, held=4)
    assert copied.metadata is wallet.metadata  # shared, not copied: metadata is replaced whole, never edited
    assert len(fields(Wallet)) == 11  # a new field must be added to _with_amounts too


# --- reversals (docs/holds-and-reversals.md) ----------------------------------------------------


def reverse(ledger: Ledger, transaction_id: str) -> Result:
    return ledger("transaction.reverse", transaction_id=transaction_id)


def test_a_reversal_applies_the_opposite_operations_in_reverse_order(ledger: Ledger) -> None:
    original = ok(ledger.tx(issue("U1", "10.00"), transfer("U1", "U2", "4.00"), redeem("U2", "1.00")))
    assert original.transaction is not None
    result = ok(reverse(ledger, original.transaction.transaction_id))
    assert result.transaction is not None and result.transaction.reverses == original.transaction.transaction_id
    # Redeem U2 1 -> Issue U2 1; Transfer U1->U2 4 -> Transfer U2->U1 4; Issue U1 10 -> Redeem U1 10.
    assert [(e.type.value, e.wallet_id, e.amount) for e in result.transaction.entries] == [
        ("Issue", "U2", "1.00"), ("Debit", "U2", "4.00"), ("Credit", "U1", "4.00"), ("Redeem", "U1", "10.00"),
    ]
    assert (ledger.balance("U1"), ledger.balance("U2")) == (0, 0)


def test_a_transaction_is_reversed_at_most_once_even_within_one_batch(ledger: Ledger) -> None:
    original = ok(ledger.tx(issue("W1", 5)))
    tid = original.transaction.transaction_id  # type: ignore[union-attr]
    first, second = ledger.store.run([req(type="transaction.reverse", project_id=P, reference_id=f"rev-{n}", transaction_id=tid) for n in (1, 2)])
    ok(first)
    failed(second, ErrorCode.TransactionAlreadyReversed)
    assert first.transaction.transaction_id in second.error.message  # type: ignore[union-attr]
    failed(reverse(ledger, tid), ErrorCode.TransactionAlreadyReversed)  # and in a later batch
    assert ledger.balance("W1") == 0


def test_a_reversal_a_failed_transaction_and_an_unknown_one_are_not_reversible(ledger: Ledger) -> None:
    original = ok(ledger.tx(issue("W1", 5)))
    reversal = ok(reverse(ledger, original.transaction.transaction_id))  # type: ignore[union-attr]
    failed(reverse(ledger, reversal.transaction.transaction_id), ErrorCode.TransactionNotReversible)  # type: ignore[union-attr]
    refused = failed(ledger.tx(redeem("W2", 1)), ErrorCode.InsufficientFunds, 0)
    failed(reverse(ledger, refused.transaction.transaction_id), ErrorCode.TransactionNotReversible)  # type: ignore[union-attr]
    failed(reverse(ledger, "00000000-0000-5000-8000-000000000000"), ErrorCode.TransactionNotFound)


def test_a_reversal_that_cannot_apply_fails_and_leaves_the_original_reversible(ledger: Ledger) -> None:
    original = ok(ledger.tx(issue("W1", 5), transfer("W1", "W2", 5)))
    ok(ledger.tx(redeem("W2", 3)))  # W2 spent what the reversal would take back
    tid = original.transaction.transaction_id  # type: ignore[union-attr]
    refused = failed(reverse(ledger, tid), ErrorCode.InsufficientFunds, 0)
    assert refused.transaction is not None and refused.transaction.reverses == tid and refused.transaction.entries == []
    ok(ledger.tx(issue("W2", 3)))
    ok(reverse(ledger, tid))
    assert (ledger.balance("W1"), ledger.balance("W2")) == (0, 0)


# --- holds (docs/holds-and-reversals.md) --------------------------------------------------------

LATER = datetime(2025, 1, 1, 0, 10, tzinfo=UTC)  # after every batch clock of these tests (T0 + seconds)


def hold(wallet: str, amount: Any, **fields: Any) -> dict[str, Any]:
    return {"type": "Hold", "wallet_id": wallet, "amount": amount, **fields}


def held(ledger: Ledger, wallet: str) -> int:
    return ledger.store.wallets[(P, wallet)].held


def test_a_hold_reserves_available_not_balance_and_a_capture_moves_part_and_releases_the_rest(ledger: Ledger) -> None:
    ok(ledger.tx(issue("U1", "10.00")))
    created = ok(ledger("hold.create", hold_id="h1", wallet_id="U1", to_wallet_id="U2", amount="6.00"))
    assert created.hold is not None and (created.hold.status, created.hold.amount) == ("Active", "6.00")
    assert (ledger.balance("U1"), held(ledger, "U1")) == (1000, 600)
    wallet = ok(ledger("wallet.rename", wallet_id="U1", name="x")).wallet
    assert wallet is not None and (wallet.balance, wallet.held, wallet.available) == ("10.00", "6.00", "4.00")
    failed(ledger.tx(transfer("U1", "U2", "4.01")), ErrorCode.InsufficientFunds, 0)  # available, not balance
    failed(ledger.tx(redeem("U1", "5")), ErrorCode.InsufficientFunds, 0)
    failed(ledger("hold.create", wallet_id="U1", amount="4.01"), ErrorCode.InsufficientFunds, 0)
    captured = ok(ledger("hold.capture", hold_id="h1", amount="2.50"))
    assert captured.hold is not None and (captured.hold.status, captured.hold.captured) == ("Captured", "2.50")
    assert captured.transaction is not None
    assert [(e.type.value, e.wallet_id, e.amount, e.balance_after, e.available_after) for e in captured.transaction.entries] == [
        ("Release", "U1", "6.00", "10.00", "10.00"), ("Debit", "U1", "2.50", "7.50", "7.50"), ("Credit", "U2", "2.50", "2.50", "2.50"),
    ]
    assert (ledger.balance("U1"), held(ledger, "U1"), ledger.balance("U2")) == (750, 0, 250)


def test_hold_edge_cases(ledger: Ledger) -> None:
    ok(ledger.tx(issue("U1", "10.00")))
    ok(ledger("hold.create", hold_id="h1", wallet_id="U1", amount="3.00"))  # no destination: a capture redeems
    failed(ledger("hold.create", hold_id="h1", wallet_id="U1", amount="1.00"), ErrorCode.HoldAlreadyExists, 0)
    failed(ledger("hold.capture", hold_id="h1", amount="3.01"), ErrorCode.HoldAmountExceeded, 0)
    assert held(ledger, "U1") == 300  # still Active
    failed(ledger("wallet.set_status", wallet_id="U1", status="Closed"), ErrorCode.WalletHasActiveHolds)
    ok(ledger("wallet.set_status", wallet_id="U1", status="Suspended"))
    failed(ledger("hold.capture", hold_id="h1"), ErrorCode.WalletNotOpen, 0)  # a suspended wallet moves no value
    voided = ok(ledger("hold.void", hold_id="h1"))  # ... but its holds can be voided
    assert voided.hold is not None and voided.hold.status == "Voided"
    for again in ("hold.capture", "hold.void"):
        message = failed(ledger(again, hold_id="h1"), ErrorCode.HoldNotActive, 0).error.message  # type: ignore[union-attr]
        assert "Voided" in message
    failed(ledger("hold.void", hold_id="nope"), ErrorCode.HoldNotFound, 0)
    ok(ledger("wallet.set_status", wallet_id="U1", status="Open"))
    ok(ledger("hold.capture", hold_id=ok(ledger("hold.create", wallet_id="U1", amount="1.00")).hold.hold_id))  # type: ignore[union-attr]
    assert (ledger.balance("U1"), held(ledger, "U1")) == (900, 0)
    failed(ledger("hold.create", wallet_id="U1", to_wallet_id="W1", amount="1"), ErrorCode.AssetMismatch, 0)
    failed(ledger("hold.create", wallet_id="U1", amount="1", expires_at="2020-01-01T00:00:00Z"), ErrorCode.ValidationError, 0)


def test_holds_in_a_transaction_are_all_or_nothing_and_such_a_transaction_is_not_reversible(ledger: Ledger) -> None:
    result = ok(ledger.tx(issue("U1", "5.00"), hold("U1", "5.00", to_wallet_id="U2"), issue("U2", "1.00")))
    hold_id = result.transaction.operations[1].hold_id  # type: ignore[union-attr]
    assert hold_id is not None  # derived and recorded
    failed(ledger.tx(issue("U1", "1.00"), hold("U1", "2.00")), ErrorCode.InsufficientFunds, 1)
    assert (ledger.balance("U1"), held(ledger, "U1")) == (500, 500)  # the Issue did not stay either
    failed(reverse(ledger, result.transaction.transaction_id), ErrorCode.TransactionNotReversible)  # type: ignore[union-attr]
    both = ok(ledger.tx({"type": "Capture", "hold_id": hold_id, "amount": "1.00"}, transfer("U2", "U1", "2.00")))
    assert both.transaction is not None and [e.type.value for e in both.transaction.entries] == ["Release", "Debit", "Credit", "Debit", "Credit"]
    assert (ledger.balance("U1"), ledger.balance("U2"), held(ledger, "U1")) == (600, 0, 0)


def test_a_hold_expires_by_log_time_before_the_request_that_touches_its_wallet(ledger: Ledger) -> None:
    ok(ledger.tx(issue("U1", "10.00")))
    expiry = "2025-01-01T00:05:00Z"
    ok(ledger("hold.create", hold_id="h1", wallet_id="U1", amount="8.00", expires_at=expiry))
    early = datetime(2025, 1, 1, 0, 4, 59, tzinfo=UTC)
    capture = req(type="hold.capture", project_id=P, reference_id="cap-early", hold_id="h1", amount="1.00")
    sweep = req(type="hold.expire", project_id=P, reference_id="~expire/h1", hold_id="h1")
    failed(ledger.store.run([sweep], log_times=[early])[0], ErrorCode.HoldNotExpired)
    # The capture's record arrived after the expiry (log time): the hold is released first.
    spend = req(type="transaction.run", project_id=P, reference_id="spend", operations=[redeem("U1", "9.00")])
    results = ledger.store.run([capture, spend], log_times=[LATER, LATER])
    failed(results[0], ErrorCode.HoldExpired, 0)
    ok(results[1])
    assert (ledger.balance("U1"), held(ledger, "U1"), ledger.store.holds[(P, "h1")].status) == (100, 0, "Expired")
    expired = ledger.store.transactions[(P, derive_transaction_id(project_id=P, reference_id="~expire/h1"))]
    assert (expired.status, expired.reference_id) == (Status.Completed, "~expire/h1")
    assert [(e.entry_type, e.amount, e.available_after) for e in ledger.store.entries if e.transaction_id == expired.transaction_id] == [(EntryType.Release, 800, 1000)]
    # The sweep that comes later answers Completed (the hold is Expired) and expires nothing twice.
    swept = ok(ledger.store.run([req(type="hold.expire", project_id=P, reference_id="~expire/h1", hold_id="h1")], log_times=[LATER])[0])
    assert swept.hold is not None and swept.hold.status == "Expired"


def test_a_replay_of_the_same_log_expires_the_same_holds(ledger: Ledger) -> None:
    import copy

    ok(ledger.tx(issue("U1", "10.00")))
    ok(ledger("hold.create", hold_id="h1", wallet_id="U1", amount="8.00", expires_at="2025-01-01T00:05:00Z"))
    ok(ledger("hold.create", hold_id="h2", wallet_id="U1", amount="1.00", expires_at="2025-01-01T00:07:00Z"))
    log = [
        req(type="transaction.run", project_id=P, reference_id=f"t{n}", operations=[redeem("U1", "2.00")]) for n in range(3)
    ]
    times = [datetime(2025, 1, 1, 0, minute, tzinfo=UTC) for minute in (4, 6, 8)]
    twin = copy.deepcopy(ledger.store)
    first = [r.model_dump() for r in ledger.store.run(log, log_times=times)]
    twin.clock = ledger.store.clock - timedelta(seconds=1)
    second = [r.model_dump() for r in twin.run(log, log_times=times)]
    assert first == second
    # t0 (minute 4) found only 1.00 available for 2.00; t1 (minute 6) after h1's expiry; t2 after h2's.
    assert [r["status"] for r in first] == ["Failed", "Completed", "Completed"]
    assert ledger.store.holds == twin.holds and [h.status for h in twin.holds.values()] == ["Expired", "Expired"]


def test_an_expired_hold_lets_its_wallet_close(ledger: Ledger) -> None:
    ok(ledger.tx(issue("U2", "1.00")))
    ok(ledger("hold.create", hold_id="h1", wallet_id="U2", amount="1.00", expires_at="2025-01-01T00:05:00Z"))
    close = req(type="wallet.set_status", project_id=P, reference_id="close", wallet_id="U2", status="Closed")
    failed(ledger.store.run([close], log_times=[datetime(2025, 1, 1, 0, 4, tzinfo=UTC)])[0], ErrorCode.WalletHasActiveHolds)
    # After the expiry the hold no longer counts: the wallet is refused only for its balance.
    close = req(type="wallet.set_status", project_id=P, reference_id="close-2", wallet_id="U2", status="Closed")
    failed(ledger.store.run([close], log_times=[LATER])[0], ErrorCode.WalletNotEmpty)
    assert held(ledger, "U2") == 0


# --- metadata (docs/holds-and-reversals.md) -----------------------------------------------------

ORDER = {"order": "123", "channel": "web"}


def test_metadata_is_carried_to_the_results_and_the_records(ledger: Ledger) -> None:
    ran = ok(ledger.tx(issue("U1", "5.00"), metadata=ORDER)).transaction
    assert ran is not None and ran.metadata == ORDER
    assert ledger.store.transactions[(P, ran.transaction_id)].metadata == ORDER
    refused = failed(ledger.tx(redeem("U2", "1.00"), metadata=ORDER), ErrorCode.InsufficientFunds, 0).transaction
    assert refused is not None and refused.metadata == ORDER  # a Failed transaction is recorded with it too
    reversal = ok(ledger("transaction.reverse", transaction_id=ran.transaction_id, metadata={"refund": "r-1"})).transaction
    assert reversal is not None and reversal.metadata == {"refund": "r-1"}  # its own, not the original's
    opened = ok(ledger("wallet.open", customer_id="ann", asset_id="usd", wallet_id="W3", metadata={"tier": "gold"})).wallet
    assert opened is not None and opened.metadata == {"tier": "gold"} == ledger.store.wallets[(P, "W3")].metadata
    system = ok(ledger("system_wallet.open", asset_id="usd", wallet_id="U3", metadata={"role": "fees"})).wallet
    assert system is not None and system.metadata == {"role": "fees"}
    customer = ok(ledger("customer.upsert", customer_id="bob", metadata={"crm": "42"})).customer
    assert customer is not None and customer.metadata == {"crm": "42"} == ledger.store.customers[(P, "bob")].metadata
    for result in (ran, refused, reversal, opened, system, customer):
        assert type(result).model_validate_json(result.model_dump_json()) == result


def test_a_hold_carries_the_metadata_of_the_transaction_that_made_it(ledger: Ledger) -> None:
    ok(ledger.tx(issue("U1", "10.00")))
    created = ok(ledger("hold.create", hold_id="h1", wallet_id="U1", amount="1.00", metadata=ORDER, expires_at="2025-01-01T00:05:00Z"))
    assert created.hold is not None and created.transaction is not None
    assert created.hold.metadata == ORDER == created.transaction.metadata == ledger.store.holds[(P, "h1")].metadata
    ok(ledger.tx(hold("U1", "1.00", hold_id="h2"), metadata={"batch": "b"}))
    assert ledger.store.holds[(P, "h2")].metadata == {"batch": "b"}  # a Hold operation has none of its own
    captured = ok(ledger("hold.capture", hold_id="h2"))
    assert captured.transaction is not None and captured.transaction.metadata == {}
    assert captured.hold is not None and captured.hold.metadata == {"batch": "b"}  # the hold keeps its own
    # The expiry the engine runs itself has none.
    ok(ledger.store.run([req(type="transaction.run", project_id=P, reference_id="late", operations=[issue("U1", "1")])], log_times=[LATER])[0])
    expiry = ledger.store.transactions[(P, derive_transaction_id(project_id=P, reference_id="~expire/h1"))]
    assert expiry.metadata == {} and ledger.store.holds[(P, "h1")].metadata == ORDER


def test_customer_upsert_and_wallet_rename_replace_metadata_whole_or_keep_it(ledger: Ledger) -> None:
    ok(ledger("customer.upsert", customer_id="bob", metadata={"a": "1", "b": "2"}))
    kept = ok(ledger("customer.upsert", customer_id="bob", name="Bob")).customer
    assert kept is not None and kept.metadata == {"a": "1", "b": "2"}  # absent: unchanged
    replaced = ok(ledger("customer.upsert", customer_id="bob", metadata={"c": "3"})).customer
    assert replaced is not None and replaced.metadata == {"c": "3"}  # given: replaced whole, not merged
    assert ok(ledger("customer.upsert", customer_id="bob", metadata={})).customer.metadata == {}  # type: ignore[union-attr]
    ok(ledger("wallet.rename", wallet_id="W1", name="one", metadata={"a": "1", "b": "2"}))
    assert ok(ledger("wallet.rename", wallet_id="W1", name="uno")).wallet.metadata == {"a": "1", "b": "2"}  # type: ignore[union-attr]
    assert ok(ledger("wallet.rename", wallet_id="W1", name="uno", metadata={"c": "3"})).wallet.metadata == {"c": "3"}  # type: ignore[union-attr]
    ok(ledger.tx(issue("W1", 5)))  # a balance change keeps it
    assert ledger.store.wallets[(P, "W1")].metadata == {"c": "3"}
    ok(ledger("wallet.set_status", wallet_id="W1", status="Suspended"))
    assert ledger.store.wallets[(P, "W1")].metadata == {"c": "3"}


def test_no_metadata_costs_one_shared_empty_dict_and_metadata_changes_no_rule(ledger: Ledger) -> None:
    import copy

    from processor.ledger.state import NO_METADATA

    plain = ok(ledger.tx(issue("W1", 5))).transaction
    assert plain is not None and plain.metadata is NO_METADATA and ledger.store.wallets[(P, "W1")].metadata is NO_METADATA
    transactions = [[transfer("W1", "W2", 2)], [transfer("W1", "W2", 9)], [issue("W2", 1), redeem("W1", 3)]]
    outcomes = []
    for labels in ({}, {"metadata": ORDER}):
        twin = Ledger()
        twin.store = copy.deepcopy(ledger.store)
        outcomes.append([twin.tx(*operations, reference_id=f"same-{n}", **labels) for n, operations in enumerate(transactions)])
    without, with_metadata = ([r.model_dump(exclude={"transaction": {"metadata"}}) for r in results] for results in outcomes)
    assert without == with_metadata and [r["status"] for r in without] == ["Completed", "Failed", "Completed"]


def test_a_request_naming_a_holding_wallet_twice_expires_its_hold_once(ledger: Ledger) -> None:
    """Found by `make fuzz`: the due holds were collected once per mention of the wallet, and the
    second expiry of the same hold failed the request with InternalError."""
    ok(ledger.tx(issue("U1", "10.00")))
    ok(ledger("hold.create", hold_id="h1", wallet_id="U1", amount="8.00", expires_at="2025-01-01T00:05:00Z"))
    twice = req(type="transaction.run", project_id=P, reference_id="twice", operations=[redeem("U1", "1.00"), transfer("U1", "U2", "1.00")])
    ok(ledger.store.run([twice], log_times=[LATER])[0])
    expiries = [t for t in ledger.store.transactions.values() if t.reference_id == "~expire/h1"]
    assert len(expiries) == 1 and ledger.store.holds[(P, "h1")].status == "Expired"
    assert (ledger.balance("U1"), held(ledger, "U1")) == (800, 0)


def test_a_reversal_of_a_transaction_made_earlier_in_the_same_batch_applies(ledger: Ledger) -> None:
    """The answer may not depend on where a batch ends: the original is found among the batch's
    own records when it is not stored yet."""
    paid = req(type="transaction.run", project_id=P, reference_id="pay", operations=[issue("U1", "5.00")])
    undo = req(type="transaction.reverse", project_id=P, reference_id="undo", transaction_id=derive_transaction_id(project_id=P, reference_id="pay"))
    again = req(type="transaction.reverse", project_id=P, reference_id="undo-2", transaction_id=derive_transaction_id(project_id=P, reference_id="pay"))
    first, reversal, second = ledger.store.run([paid, undo, again])
    ok(first)
    assert ok(reversal).transaction.reverses == first.transaction.transaction_id  # type: ignore[union-attr]
    failed(second, ErrorCode.TransactionAlreadyReversed)
    assert ledger.balance("U1") == 0
