"""Property-based: the engine, fed in random batch sizes through a dict store, agrees with
a deliberately simple one-request-at-a-time reference model, and the ledger invariants
hold after every step (holds included: `available` never goes below zero, conservation
counts held value as the balance it still is)."""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from schemas.errors import ErrorCode
from schemas.limits import MAX_BALANCE_MINOR
from schemas.requests import RequestAdapter
from schemas.states import EntryType, Status

from .memstore import MemoryStore

PROJECTS = ["p0", "p1"]
ASSETS = ["a0", "a1", "a2"]
CUSTOMERS = ["c0", "c1"]
WALLETS = ["w0", "w1", "w2", "w3", "w4"]
REFS = ["r0", "r1", "r2", "r3"]
AMOUNTS = ["1", "2", "5", "10", "30", "0.5", "0.25", "0.001", "3.10", 7, 1]
FRACTIONS = [1, 100, 1000]

E = ErrorCode


@dataclass
class MWallet:
    asset: str
    customer: str | None
    status: str = "Open"
    balance: int = 0
    held: int = 0


@dataclass
class MHold:
    wallet: str
    to: str | None
    amount: int
    status: str = "Active"


class Model:
    """Each rule written out plainly, applied one request at a time."""

    def __init__(self) -> None:
        self.projects: set[str] = set()
        self.assets: dict[tuple[str, str], dict[str, Any]] = {}
        self.customers: dict[tuple[str, str], str] = {}
        self.wallets: dict[tuple[str, str], MWallet] = {}
        self.refs: set[tuple[str, str]] = set()
        self.holds: dict[tuple[str, str], MHold] = {}

    def apply(self, r: dict[str, Any]) -> tuple[str, ErrorCode | None, int | None]:
        p, ref, kind = r["project_id"], r["reference_id"], r["type"]
        if kind != "project.create" and p not in self.projects:
            return "Failed", E.ProjectNotFound, None
        if (p, ref) in self.refs:
            return "Failed", E.DuplicateReferenceId, None
        self.refs.add((p, ref))
        code, index = self._rules(r)
        return ("Completed" if code is None else "Failed"), code, index

    def _rules(self, r: dict[str, Any]) -> tuple[ErrorCode | None, int | None]:
        p, kind = r["project_id"], r["type"]
        if kind == "project.create":
            if p in self.projects:
                return E.ProjectAlreadyExists, None
            self.projects.add(p)
        elif kind == "asset.create":
            if (p, r["asset_id"]) in self.assets:
                return E.AssetAlreadyExists, None
            self.assets[(p, r["asset_id"])] = {"fractions": r["fractions"], "in_use": False}
        elif kind == "asset.delete":
            asset = self.assets.get((p, r["asset_id"]))
            if asset is None:
                return E.AssetNotFound, None
            if asset["in_use"]:
                return E.AssetInUse, None
            del self.assets[(p, r["asset_id"])]
        elif kind == "customer.upsert":
            self.customers.setdefault((p, r["customer_id"]), "Active")
        elif kind in ("customer.suspend", "customer.resume", "customer.delete"):
            c = (p, r["customer_id"])
            if c not in self.customers:
                return E.CustomerNotFound, None
            owned = [w for (wp, _), w in self.wallets.items() if wp == p and w.customer == r["customer_id"]]
            if kind == "customer.suspend":
                self.customers[c] = "Suspended"
                for w in owned:
                    if w.status == "Open":
                        w.status = "Suspended"
            elif kind == "customer.resume":
                self.customers[c] = "Active"
            else:
                if any(w.status != "Closed" for w in owned):
                    return E.CustomerHasOpenWallets, None
                del self.customers[c]
        elif kind in ("wallet.open", "system_wallet.open"):
            if (p, r["asset_id"]) not in self.assets:
                return E.AssetNotFound, None
            customer = r.get("customer_id")
            if customer is not None:
                if (p, customer) not in self.customers:
                    return E.CustomerNotFound, None
                if self.customers[(p, customer)] == "Suspended":
                    return E.CustomerSuspended, None
            if (p, r["wallet_id"]) in self.wallets:
                return E.WalletAlreadyExists, None
            self.wallets[(p, r["wallet_id"])] = MWallet(asset=r["asset_id"], customer=customer)
            self.assets[(p, r["asset_id"])]["in_use"] = True
        elif kind == "wallet.set_status":
            w = self.wallets.get((p, r["wallet_id"]))
            target = r["status"]
            if w is None:
                return E.WalletNotFound, None
            if w.status == target:
                return None, None
            if w.status == "Closed":
                return E.WalletClosed, None
            if target == "Closed" and w.held != 0:
                return E.WalletHasActiveHolds, None
            if target == "Closed" and w.balance != 0:
                return E.WalletNotEmpty, None
            if target == "Open" and w.customer is not None and self.customers[(p, w.customer)] == "Suspended":
                return E.CustomerSuspended, None
            w.status = target
        elif kind == "transaction.run":
            return self._transaction(p, r["operations"])
        elif kind == "hold.create":
            return self._hold(p, r)
        elif kind in ("hold.capture", "hold.void"):
            return self._finish(p, r)
        else:
            raise AssertionError(kind)
        return None, None

    def _transaction(self, p: str, operations: list[dict[str, Any]]) -> tuple[ErrorCode | None, int | None]:
        balances = {k: w.balance for k, w in self.wallets.items() if k[0] == p}
        for i, op in enumerate(operations):
            names = [op["from_wallet_id"], op["to_wallet_id"]] if op["type"] == "Transfer" else [op["wallet_id"]]
            for name in names:
                w = self.wallets.get((p, name))
                if w is None:
                    return E.WalletNotFound, i
                if w.status == "Closed":
                    return E.WalletClosed, i
                if w.status == "Suspended":
                    return E.WalletNotOpen, i
            ws = [self.wallets[(p, n)] for n in names]
            if len({w.asset for w in ws}) > 1:
                return E.AssetMismatch, i
            minor = Fraction(Decimal(str(op["amount"]))) * self.assets[(p, ws[0].asset)]["fractions"]
            if minor.denominator != 1:
                return E.ValidationError, i
            amount = int(minor)
            if op["type"] in ("Redeem", "Transfer"):
                if balances[(p, names[0])] - self.wallets[(p, names[0])].held < amount:
                    return E.InsufficientFunds, i
                balances[(p, names[0])] -= amount
            if op["type"] in ("Issue", "Transfer"):
                if balances[(p, names[-1])] + amount > MAX_BALANCE_MINOR:
                    return E.BalanceLimitExceeded, i
                balances[(p, names[-1])] += amount
        for key, balance in balances.items():
            self.wallets[key].balance = balance
        return None, None


    def _operable(self, p: str, name: str) -> ErrorCode | None:
        w = self.wallets.get((p, name))
        if w is None:
            return E.WalletNotFound
        return {"Closed": E.WalletClosed, "Suspended": E.WalletNotOpen}.get(w.status)

    def _minor(self, p: str, wallet: str, amount: Any) -> int | None:
        minor = Fraction(Decimal(str(amount))) * self.assets[(p, self.wallets[(p, wallet)].asset)]["fractions"]
        return int(minor) if minor.denominator == 1 else None

    def _hold(self, p: str, r: dict[str, Any]) -> tuple[ErrorCode | None, int | None]:
        for name in (r["wallet_id"], r.get("to_wallet_id")):
            if name is not None and (code := self._operable(p, name)) is not None:
                return code, 0
        source = self.wallets[(p, r["wallet_id"])]
        if r.get("to_wallet_id") is not None and self.wallets[(p, r["to_wallet_id"])].asset != source.asset:
            return E.AssetMismatch, 0
        if (p, r["hold_id"]) in self.holds:
            return E.HoldAlreadyExists, 0
        amount = self._minor(p, r["wallet_id"], r["amount"])
        if amount is None:
            return E.ValidationError, 0
        if source.balance - source.held < amount:
            return E.InsufficientFunds, 0
        source.held += amount
        self.holds[(p, r["hold_id"])] = MHold(wallet=r["wallet_id"], to=r.get("to_wallet_id"), amount=amount)
        return None, None

    def _finish(self, p: str, r: dict[str, Any]) -> tuple[ErrorCode | None, int | None]:
        hold = self.holds.get((p, r["hold_id"]))
        if hold is None:
            return E.HoldNotFound, 0
        if hold.status != "Active":
            return E.HoldNotActive, 0
        source = self.wallets[(p, hold.wallet)]
        if r["type"] == "hold.void":  # allowed on a Suspended wallet: nothing moves
            source.held -= hold.amount
            hold.status = "Voided"
            return None, None
        for name in (hold.wallet, hold.to):
            if name is not None and (code := self._operable(p, name)) is not None:
                return code, 0
        amount = hold.amount if r.get("amount") is None else self._minor(p, hold.wallet, r["amount"])
        if amount is None:
            return E.ValidationError, 0
        if amount > hold.amount:
            return E.HoldAmountExceeded, 0
        source.held -= hold.amount
        source.balance -= amount
        if hold.to is not None:
            self.wallets[(p, hold.to)].balance += amount
        hold.status = "Captured"
        return None, None


amounts = st.sampled_from(AMOUNTS)
operation = st.one_of(
    st.builds(lambda w, a: {"type": "Issue", "wallet_id": w, "amount": a}, st.sampled_from(WALLETS), amounts),
    st.builds(lambda w, a: {"type": "Redeem", "wallet_id": w, "amount": a}, st.sampled_from(WALLETS), amounts),
    st.builds(
        lambda pair, a: {"type": "Transfer", "from_wallet_id": pair[0], "to_wallet_id": pair[1], "amount": a},
        st.lists(st.sampled_from(WALLETS), min_size=2, max_size=2, unique=True),
        amounts,
    ),
)
projects = st.sampled_from(PROJECTS)
# mostly p0 so that most requests land in an existing project
project = st.one_of(st.just("p0"), st.just("p0"), projects)
# None: a fresh reference ID (most of the time); otherwise one from a small pool, so repeats happen
reference = st.one_of(st.none(), st.none(), st.none(), st.sampled_from(REFS))


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore()
        self.model = Model()
        self.pending: list[tuple[dict[str, Any], tuple[str, ErrorCode | None, int | None]]] = []
        self.fresh = 0
        self.holds_made = 0

    def submit(self, reference_id: str | None, **body: Any) -> None:
        if reference_id is None:
            self.fresh += 1
            reference_id = f"fresh-{self.fresh}"
        body["reference_id"] = reference_id
        self.pending.append((body, self.model.apply(body)))

    @initialize()
    def setup(self) -> None:
        self.submit(None, type="project.create", project_id="p0", name="P0")
        self.submit(None, type="asset.create", project_id="p0", asset_id="a0", code="A0", name="A0", fractions=1)
        self.submit(None, type="asset.create", project_id="p0", asset_id="a1", code="A1", name="A1", fractions=100)
        self.submit(None, type="customer.upsert", project_id="p0", customer_id="c0")
        self.submit(None, type="wallet.open", project_id="p0", customer_id="c0", asset_id="a0", wallet_id="w0")
        self.submit(None, type="system_wallet.open", project_id="p0", asset_id="a0", wallet_id="w1")
        self.submit(None, type="system_wallet.open", project_id="p0", asset_id="a1", wallet_id="w2")
        self.submit(None, type="customer.upsert", project_id="p0", customer_id="c1")
        self.submit(None, type="wallet.open", project_id="p0", customer_id="c1", asset_id="a0", wallet_id="w3")
        self.submit(None, type="transaction.run", project_id="p0", operations=[
            {"type": "Issue", "wallet_id": "w0", "amount": 10},
            {"type": "Issue", "wallet_id": "w2", "amount": "10"},
        ])
        self.flush()

    # --- requests ---------------------------------------------------------------------

    @rule(ref=reference, p=projects)
    def project_create(self, ref: str | None, p: str) -> None:
        self.submit(ref, type="project.create", project_id=p, name="P")

    @rule(ref=reference, p=project, a=st.sampled_from(ASSETS), fractions=st.sampled_from(FRACTIONS))
    def asset_create(self, ref: str | None, p: str, a: str, fractions: int) -> None:
        self.submit(ref, type="asset.create", project_id=p, asset_id=a, code=a, name=a, fractions=fractions)

    @rule(ref=reference, p=project, a=st.sampled_from(ASSETS))
    def asset_delete(self, ref: str | None, p: str, a: str) -> None:
        self.submit(ref, type="asset.delete", project_id=p, asset_id=a)

    @rule(
        ref=reference,
        p=project,
        c=st.sampled_from(CUSTOMERS),
        kind=st.sampled_from(["customer.upsert", "customer.suspend", "customer.resume", "customer.delete"]),
    )
    def customer(self, ref: str | None, p: str, c: str, kind: str) -> None:
        self.submit(ref, type=kind, project_id=p, customer_id=c)

    @rule(ref=reference, p=project, c=st.one_of(st.none(), st.sampled_from(CUSTOMERS)),
          a=st.sampled_from(ASSETS), w=st.sampled_from(WALLETS))
    def wallet_open(self, ref: str | None, p: str, c: str | None, a: str, w: str) -> None:
        if c is None:
            self.submit(ref, type="system_wallet.open", project_id=p, asset_id=a, wallet_id=w)
        else:
            self.submit(ref, type="wallet.open", project_id=p, customer_id=c, asset_id=a, wallet_id=w)

    @rule(ref=reference, p=project, w=st.sampled_from(WALLETS), status=st.sampled_from(["Open", "Suspended", "Closed"]))
    def wallet_set_status(self, ref: str | None, p: str, w: str, status: str) -> None:
        self.submit(ref, type="wallet.set_status", project_id=p, wallet_id=w, status=status)

    @rule(ref=reference, p=project, ops=st.lists(operation, min_size=1, max_size=4))
    def transaction(self, ref: str | None, p: str, ops: list[dict[str, Any]]) -> None:
        self.submit(ref, type="transaction.run", project_id=p, operations=ops)

    @rule(ref=reference, p=project, ops=st.lists(operation, min_size=1, max_size=3), times=st.integers(1, 3))
    def transaction_redelivered(self, ref: str | None, p: str, ops: list[dict[str, Any]], times: int) -> None:
        """The same request (same reference) arriving again, possibly in the same batch."""
        self.transaction(ref, p, ops)
        for _ in range(times):
            body = dict(self.pending[-1][0])
            self.pending.append((body, self.model.apply(body)))

    holds = Bundle("holds")  # hold IDs asked for (made or refused): what captures and voids name

    # Mostly from the wallets the setup funded (w0, w2), so that most holds are made.
    @rule(target=holds, ref=reference, p=project, source=st.sampled_from(["w0", "w0", "w2", "w2", *WALLETS]), target_wallet=st.sampled_from(WALLETS),
          toward=st.booleans(), a=st.sampled_from(["1", "2", "5", "0.5", 7]), again=st.integers(0, 4))
    def hold_create(self, ref: str | None, p: str, source: str, target_wallet: str, toward: bool, a: Any, again: int) -> str:
        self.holds_made += 0 if again == 0 and self.holds_made else 1  # sometimes the last ID again: HoldAlreadyExists
        h = f"h{self.holds_made}"
        destination = {"to_wallet_id": target_wallet} if toward and target_wallet != source else {}
        self.submit(ref, type="hold.create", project_id=p, hold_id=h, wallet_id=source, amount=a, **destination)
        return h

    @rule(ref=reference, p=project, h=holds, a=st.one_of(st.none(), st.sampled_from(["1", "2", "5", "10", "0.5"])), void=st.booleans())
    def hold_finish(self, ref: str | None, p: str, h: str, a: Any, void: bool) -> None:
        if void:
            self.submit(ref, type="hold.void", project_id=p, hold_id=h)
        else:
            self.submit(ref, type="hold.capture", project_id=p, hold_id=h, **({} if a is None else {"amount": a}))

    @rule(source=st.sampled_from(["w0", "w2"]), target_wallet=st.sampled_from(WALLETS), held=st.sampled_from(["1", "2", "5"]),
          captured=st.one_of(st.none(), st.sampled_from(["1", "2", "5", "10", "0.5"])), void=st.booleans(),
          spend=st.one_of(st.none(), st.sampled_from(["1", "5", "9"])))
    def hold_then_finish(self, source: str, target_wallet: str, held: str, captured: Any, void: bool, spend: str | None) -> None:
        """A hold, maybe a spend from its wallet while it is held (available, not balance, must
        cover it), then its capture or void: every capture rule runs."""
        h = self.hold_create(None, "p0", source, target_wallet, True, held, 1)
        if spend is not None:
            self.transaction(None, "p0", [{"type": "Redeem", "wallet_id": source, "amount": spend}])
        self.hold_finish(None, "p0", h, captured, void)

    # --- the engine -------------------------------------------------------------------

    @rule()
    def flush(self) -> None:
        if not self.pending:
            return
        bodies = [body for body, _ in self.pending]
        expected = [outcome for _, outcome in self.pending]
        self.pending = []
        requests = [RequestAdapter.validate_python(b) for b in bodies]
        references_before = dict(self.store.references)
        entries_before = len(self.store.entries)
        results = self.store.run(requests)
        new_entries = self.store.entries[entries_before:]
        for body, result, (status, code, index) in zip(bodies, results, expected, strict=True):
            got = (result.status.value, result.error.code if result.error else None,
                   result.error.operation_index if result.error else None)
            assert got == (status, code, index), (body, result.error)
            if code == E.DuplicateReferenceId:
                original = self.store.references[(body["project_id"], body["reference_id"])]
                assert result.original == original
                assert result.original is not None
                if (body["project_id"], body["reference_id"]) in references_before:
                    assert references_before[(body["project_id"], body["reference_id"])] == original
            if body["type"] == "transaction.run" and result.status == Status.Failed:
                tx_id = result.transaction.transaction_id if result.transaction else None
                assert not any(e.transaction_id == tx_id for e in new_entries), "failed tx posts nothing"
        # the store agrees with the model
        assert set(self.store.projects) == self.model.projects
        assert {k: (a.fractions, a.in_use) for k, a in self.store.assets.items()} == {
            k: (a["fractions"], a["in_use"]) for k, a in self.model.assets.items()
        }
        assert {k: c.status.value for k, c in self.store.customers.items()} == self.model.customers
        assert {
            k: (w.asset_id, w.customer_id, w.status.value, w.balance, w.held) for k, w in self.store.wallets.items()
        } == {k: (w.asset, w.customer, w.status, w.balance, w.held) for k, w in self.model.wallets.items()}
        assert {k: (h.wallet_id, h.amount, h.status.value) for k, h in self.store.holds.items()} == {
            k: (h.wallet, h.amount, h.status) for k, h in self.model.holds.items()
        }
        assert set(self.store.references) == self.model.refs

    def teardown(self) -> None:
        self.flush()

    # --- invariants over the store ------------------------------------------------------

    @invariant()
    def no_negative_balance_nor_available(self) -> None:
        """BALANCE_IN_RANGE and AVAILABLE_NOT_NEGATIVE: 0 <= held <= balance."""
        assert all(0 <= w.held <= w.balance <= MAX_BALANCE_MINOR for w in self.store.wallets.values())

    @invariant()
    def held_is_the_active_holds(self) -> None:
        active: dict[tuple[str, str], int] = defaultdict(int)
        for hold in self.store.holds.values():
            if hold.status.value == "Active":
                active[hold.wallet_key] += hold.amount
        assert {k: w.held for k, w in self.store.wallets.items() if w.held} == dict(active)

    @invariant()
    def entries_sum_to_balances(self) -> None:
        per_wallet: dict[tuple[str, str], int] = defaultdict(int)
        last: dict[tuple[str, str], int] = {}
        issued: dict[tuple[str, str], int] = defaultdict(int)
        held: dict[tuple[str, str], int] = defaultdict(int)
        for e in self.store.entries:
            key = (e.project_id, e.wallet_id)
            sign = {EntryType.Issue: 1, EntryType.Credit: 1, EntryType.Redeem: -1, EntryType.Debit: -1}.get(e.entry_type, 0)
            per_wallet[key] += sign * e.amount
            held[key] += {EntryType.Hold: e.amount, EntryType.Release: -e.amount}.get(e.entry_type, 0)
            assert per_wallet[key] == e.balance_after
            assert e.available_after == e.balance_after - held[key] >= 0
            last[key] = e.balance_after
            asset = self.store.wallets[key].asset_id
            if e.entry_type == EntryType.Issue:
                issued[(e.project_id, asset)] += e.amount
            elif e.entry_type == EntryType.Redeem:
                issued[(e.project_id, asset)] -= e.amount
        per_asset: dict[tuple[str, str], int] = defaultdict(int)
        for key, wallet in self.store.wallets.items():
            assert wallet.balance == per_wallet.get(key, 0) == last.get(key, 0)
            per_asset[(wallet.project_id, wallet.asset_id)] += wallet.balance
        assert {k: v for k, v in per_asset.items() if v} == {k: v for k, v in issued.items() if v}

    @invariant()
    def transactions_recorded_once_per_reference(self) -> None:
        refs = [(t.project_id, t.reference_id) for t in self.store.transactions.values()]
        assert len(refs) == len(set(refs))


LedgerMachine.TestCase.settings = settings(
    max_examples=75,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase
