"""The fuzzer's own valid world: one project, an asset, funded system wallets, a few customers.

Hostile records are built from valid requests aimed at this world, so a mutation that happens
to stay valid does real work (moves money, renames a wallet) and the audit has something to check.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from schemas.requests import RequestAdapter, partition_key

Request = dict[str, Any]
Path = tuple[str | int, ...]

FUNDING = "1000000000"  # per wallet: valid transfers of cents never run dry
OPERATION_FIELDS = {"Issue": ("wallet_id", "amount"), "Redeem": ("wallet_id", "amount"), "Transfer": ("from_wallet_id", "to_wallet_id", "amount")}


@dataclass(frozen=True, kw_only=True)
class World:
    project: str
    asset: str
    wallets: tuple[str, ...]
    customers: tuple[str, ...]

    @classmethod
    def named(cls, *, suffix: str, wallets: int = 8, customers: int = 4) -> World:
        return cls(
            project=f"fz-{suffix}",
            asset="usd",
            wallets=tuple(f"w{i}" for i in range(wallets)),
            customers=tuple(f"c{i}@fuzz.example" for i in range(customers)),
        )

    def setup_stages(self) -> list[list[Request]]:
        """Requests to apply before the hostile load; a stage's requests may run in parallel."""
        p = self.project
        return [
            [{"type": "project.create", "project_id": p, "reference_id": "setup-project", "name": "Fuzz"}],
            [{"type": "asset.create", "project_id": p, "asset_id": self.asset, "code": "USD", "name": "Dollar", "fractions": 100, "reference_id": "setup-asset"}],
            [{"type": "system_wallet.open", "project_id": p, "asset_id": self.asset, "wallet_id": w, "reference_id": f"setup-open-{w}"} for w in self.wallets]
            + [{"type": "customer.upsert", "project_id": p, "customer_id": c, "name": "Fuzz customer", "reference_id": f"setup-customer-{i}"} for i, c in enumerate(self.customers)],
            [
                {
                    "type": "transaction.run",
                    "project_id": p,
                    "reference_id": "setup-fund",
                    "operations": [{"type": "Issue", "wallet_id": w, "amount": FUNDING} for w in self.wallets],
                }
            ],
        ]

    def transfer(self, *, reference_id: str, rng: random.Random, amount: str = "0.01") -> Request:
        source, target = rng.sample(self.wallets, 2)
        operation = {"type": "Transfer", "from_wallet_id": source, "to_wallet_id": target, "amount": amount}
        return {"type": "transaction.run", "project_id": self.project, "reference_id": reference_id, "operations": [operation]}

    def probe(self, *, reference_id: str, customer: int = 0) -> Request:
        """A request that always succeeds and touches no money: the stall probe."""
        customer_id = self.customers[customer % len(self.customers)]
        return {"type": "customer.upsert", "project_id": self.project, "customer_id": customer_id, "description": "probe", "reference_id": reference_id}

    def template(self, request_type: str, *, reference_id: str, rng: random.Random) -> Request:
        """A valid request of `request_type` aimed at this world (most fail on business rules,
        e.g. AssetAlreadyExists, which is fine: they are the base that mutations start from)."""
        base: Request = {"type": request_type, "project_id": self.project, "reference_id": reference_id}
        return base | self._fields(request_type, rng)

    def _fields(self, request_type: str, rng: random.Random) -> Request:
        wallet, customer = rng.choice(self.wallets), rng.choice(self.customers)
        own_wallet = f"cw{self.customers.index(customer)}"
        text = {"name": "Fuzz name", "description": "fuzz description"}
        match request_type:
            case "project.create" | "project.rename":
                return {"name": text["name"]}
            case "asset.create":
                return {"asset_id": self.asset, "code": "USD", "name": text["name"], "fractions": 100}
            case "asset.rename":
                return {"asset_id": self.asset, "name": text["name"]}
            case "asset.delete":
                return {"asset_id": self.asset}
            case "customer.upsert":
                return {"customer_id": customer} | text
            case "customer.suspend" | "customer.resume" | "customer.delete":
                return {"customer_id": customer}
            case "wallet.open":
                return {"customer_id": customer, "asset_id": self.asset, "wallet_id": own_wallet} | text
            case "system_wallet.open":
                return {"asset_id": self.asset, "wallet_id": wallet} | text
            case "wallet.set_status":
                return {"wallet_id": wallet, "status": "Open"}
            case "wallet.rename":
                return {"wallet_id": wallet, "name": text["name"]}
            case "wallet.set_description":
                return {"wallet_id": wallet, "description": text["description"]}
            case "transaction.run":
                return {"description": text["description"], "operations": self._operations(rng)}
            case "transaction.reverse":
                return {"transaction_id": "00000000-0000-5000-8000-000000000000"}
            case "hold.create":
                return {"wallet_id": wallet, "to_wallet_id": own_wallet, "amount": "0.01", "expires_at": "2030-01-01T00:00:00Z"}
            case "hold.capture":
                return {"hold_id": "fuzz-hold", "amount": "0.01"}
            case "hold.void":
                return {"hold_id": "fuzz-hold"}
            case "hold.expire":
                return {"hold_id": "fuzz-hold", "reference_id": "~expire/fuzz-hold"}
        raise ValueError(f"unknown request type {request_type!r}")

    def _operations(self, rng: random.Random) -> list[Request]:
        source, target, other = rng.sample(self.wallets, 3)
        return [
            {"type": "Transfer", "from_wallet_id": source, "to_wallet_id": target, "amount": "0.01"},
            {"type": "Issue", "wallet_id": other, "amount": "0.02"},
            {"type": "Redeem", "wallet_id": other, "amount": "0.01"},
        ]


def key_of(request: Request) -> bytes:
    """The record key the contract asks for (schemas.requests.partition_key)."""
    return partition_key(RequestAdapter.validate_python(request)).encode()


def field_paths(request: Request) -> list[Path]:
    """Every field of a request, nested operations included: what mutations replace."""
    found: list[Path] = []

    def walk(value: Any, path: Path) -> None:
        if path:
            found.append(path)
        if isinstance(value, dict):
            for name, inner in value.items():
                walk(inner, (*path, name))
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(inner, (*path, index))

    walk(request, ())
    return found


def path_text(path: Path) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
