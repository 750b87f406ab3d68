"""The benchmark's traffic, generated up front as ready-to-publish records (seeded, reproducible).

All workloads run in one project with one asset (fractions 100) and `wallets` customer wallets
funded with FUNDING each, plus one system wallet (`fees`) for the hot-wallet workload.
Requests are encoded by hand (the wire format is stable) so the client spends its CPU on Kafka,
not on building JSON.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

from processor.ingest.reading import Outgoing
from schemas.results import result_key

PROJECT = "bench"
ASSET = "usd"
FEE_WALLET = "fees"
FUNDING = "1000000"  # asset units per wallet; transfers move 0.01 .. 9.99
WALLETS_PER_CUSTOMER = 10
FAILING_AMOUNT = "100000000"  # more than any wallet ever holds: InsufficientFunds


def wallet_id(index: int) -> str:
    return f"w{index:07d}"


@dataclass(kw_only=True)
class Workload:
    name: str
    records: list[Outgoing]
    operations: int  # operations over all transactions
    expected_failures: int = 0  # transactions built to fail (InsufficientFunds)

    @property
    def transactions(self) -> int:
        return len(self.records)


def _record(reference: str, key_wallet: str, operations: str, kind: str = "transaction.run") -> Outgoing:
    value = f'{{"type":"{kind}","project_id":"{PROJECT}","reference_id":"{reference}","operations":[{operations}]}}'.encode()
    return Outgoing(key=f"{PROJECT}/{key_wallet}".encode(), value=value, result_key=result_key(project_id=PROJECT, reference_id=reference), line=0, type=kind)


def _plain(request: dict, key: str, line: int = 0) -> Outgoing:
    reference = request["reference_id"]
    project = request.get("project_id", PROJECT)
    return Outgoing(
        key=key.encode(),
        value=json.dumps(request, separators=(",", ":")).encode(),
        result_key=result_key(project_id=project, reference_id=reference),
        line=line,
        type=request["type"],
    )


def _amount(rng: random.Random) -> str:
    cents = rng.randint(1, 999)
    return f"{cents // 100}.{cents % 100:02d}"


def _transfer(source: str, target: str, amount: str) -> str:
    return f'{{"type":"Transfer","from_wallet_id":"{source}","to_wallet_id":"{target}","amount":"{amount}"}}'


def _pair(rng: random.Random, wallets: int) -> tuple[str, str]:
    a = rng.randrange(wallets)
    b = rng.randrange(wallets - 1)
    if b >= a:
        b += 1
    return wallet_id(a), wallet_id(b)


# ----------------------------------------------------------------------------------- set-up


def setup_phases(wallets: int) -> Iterator[tuple[str, list[Outgoing]]]:
    """Project, asset, customers, wallets (+ the fee wallet), funding: each phase after the last."""
    yield "project", [_plain({"type": "project.create", "project_id": PROJECT, "reference_id": "setup-project", "name": "Benchmark"}, f"{PROJECT}/{PROJECT}")]
    yield "asset", [
        _plain(
            {"type": "asset.create", "project_id": PROJECT, "reference_id": "setup-asset", "asset_id": ASSET, "code": "USD", "name": "US dollar", "fractions": 100},
            f"{PROJECT}/{ASSET}",
        )
    ]
    customers = (wallets + WALLETS_PER_CUSTOMER - 1) // WALLETS_PER_CUSTOMER
    yield "customers", [
        _plain({"type": "customer.upsert", "project_id": PROJECT, "reference_id": f"setup-customer-{c}", "customer_id": f"c{c:06d}"}, f"{PROJECT}/c{c:06d}")
        for c in range(customers)
    ]
    opens = [
        _plain(
            {"type": "wallet.open", "project_id": PROJECT, "reference_id": f"setup-wallet-{i}", "customer_id": f"c{i // WALLETS_PER_CUSTOMER:06d}", "asset_id": ASSET, "wallet_id": wallet_id(i)},
            f"{PROJECT}/{wallet_id(i)}",
        )
        for i in range(wallets)
    ]
    opens.append(
        _plain({"type": "system_wallet.open", "project_id": PROJECT, "reference_id": "setup-fees", "asset_id": ASSET, "wallet_id": FEE_WALLET, "name": "Fees"}, f"{PROJECT}/{FEE_WALLET}")
    )
    yield "wallets", opens
    funding = []
    for start in range(0, wallets, 100):
        issues = ",".join(f'{{"type":"Issue","wallet_id":"{wallet_id(i)}","amount":"{FUNDING}"}}' for i in range(start, min(start + 100, wallets)))
        funding.append(_record(f"setup-fund-{start}", wallet_id(start), issues))
    yield "funding", funding


# ----------------------------------------------------------------------------------- workloads


def uniform_transfers(*, count: int, wallets: int, seed: int, prefix: str = "uniform") -> Iterator[tuple[str, str, str, str]]:
    """(reference, from wallet, to wallet, amount) of the uniform workload."""
    rng = random.Random(seed)
    for i in range(count):
        source, target = _pair(rng, wallets)
        yield f"{prefix}-{i}", source, target, _amount(rng)


def uniform(*, count: int, wallets: int, seed: int, prefix: str = "uniform") -> Workload:
    """Single transfers between two random wallets."""
    records = [
        _record(reference, source, _transfer(source, target, amount))
        for reference, source, target, amount in uniform_transfers(count=count, wallets=wallets, seed=seed, prefix=prefix)
    ]
    return Workload(name=prefix, records=records, operations=count)


def hot_wallet(*, count: int, wallets: int, seed: int) -> Workload:
    """A transfer between random wallets plus a fee to the one system wallet (2 operations)."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        source, target = _pair(rng, wallets)
        operations = _transfer(source, target, _amount(rng)) + "," + _transfer(source, FEE_WALLET, "0.05")
        records.append(_record(f"hot-{i}", source, operations))
    return Workload(name="hot_wallet", records=records, operations=2 * count)


def mixed(*, count: int, wallets: int, seed: int, failing: float = 0.05) -> Workload:
    """1-5 operations (Transfer 70%, Issue 15%, Redeem 15%); `failing` of them end with an
    operation no wallet can afford (InsufficientFunds: the whole transaction fails)."""
    rng = random.Random(seed)
    records = []
    operations = 0
    fails = 0
    for i in range(count):
        n = rng.randint(1, 5)
        ops: list[str] = []
        key_wallet: str | None = None
        first_credit: str | None = None
        fail_at = rng.randrange(n) if rng.random() < failing else -1
        for k in range(n):
            roll = rng.random()
            if k == fail_at:
                source, target = _pair(rng, wallets)
                ops.append(_transfer(source, target, FAILING_AMOUNT))
                key_wallet = key_wallet or source
            elif roll < 0.70:
                source, target = _pair(rng, wallets)
                ops.append(_transfer(source, target, _amount(rng)))
                key_wallet = key_wallet or source
            elif roll < 0.85:
                w = wallet_id(rng.randrange(wallets))
                ops.append(f'{{"type":"Issue","wallet_id":"{w}","amount":"{_amount(rng)}"}}')
                first_credit = first_credit or w
            else:
                w = wallet_id(rng.randrange(wallets))
                ops.append(f'{{"type":"Redeem","wallet_id":"{w}","amount":"{_amount(rng)}"}}')
                key_wallet = key_wallet or w
        fails += fail_at >= 0
        operations += n
        records.append(_record(f"mixed-{i}", key_wallet or first_credit or wallet_id(0), ",".join(ops)))
    return Workload(name="mixed", records=records, operations=operations, expected_failures=fails)
