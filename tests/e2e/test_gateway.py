"""The HTTP gateway end to end: a real `cloudwallet gateway` over real HTTP, a real processor,
real Kafka and PostgreSQL. Every endpoint, its documented failures, paging, time filters,
access rules, the seeds' W1/W2 example, and the 202-then-poll path."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from processor.client import WalletClient
from processor.gateway.api_keys import create_key, revoke_key
from schemas.signing import SigningKey, key_for, read_master
from processor.signing_keys import create_signing_key

from .conftest import ROOT
from .gateway_support import (
    Api,
    GatewayProcess,
    GatewayStack,
    gateway_stack,  # noqa: F401 - the module's fixture
    issue,
    open_system_wallet,
    run_async,
    setup_project,
    unique,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(gateway_stack: GatewayStack) -> GatewayStack:  # noqa: F811
    return gateway_stack


@pytest.fixture
def api(stack: GatewayStack) -> Api:
    return stack.api()


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def fields_of(response: httpx.Response) -> list[str]:
    return [item["field"] for item in response.json()["error"]["fields"]]


# --- the seeds' example ------------------------------------------------------------------------


def test_seed_w1_w2_example_over_http(api: Api) -> None:
    project = unique("seed")
    setup_project(api, project)
    for wallet in ("W1", "W2"):
        open_system_wallet(api, project, wallet)
    issue(api, project, "W1", "5")
    issue(api, project, "W2", "7")

    failing = api.post(
        f"/projects/{project}/transactions",
        json={
            "reference_id": "w1w2-first",
            "operations": [
                {"type": "Transfer", "from_wallet_id": "W1", "to_wallet_id": "W2", "amount": "11"},
                {"type": "Issue", "wallet_id": "W1", "amount": "6"},
            ],
        },
    )
    assert failing.status_code == 409, failing.text
    body = failing.json()
    assert body["status"] == "Failed"
    assert body["error"]["code"] == "InsufficientFunds"
    assert body["error"]["operation_index"] == 0
    assert body["transaction"]["status"] == "Failed" and body["transaction"]["entries"] == []
    assert api.get(f"/projects/{project}/wallets/W1").json()["balance"] == "5.00"
    assert api.get(f"/projects/{project}/wallets/W2").json()["balance"] == "7.00"

    reordered = api.post(
        f"/projects/{project}/transactions",
        json={
            "reference_id": "w1w2-second",
            "operations": [
                {"type": "Issue", "wallet_id": "W1", "amount": "6"},
                {"type": "Transfer", "from_wallet_id": "W1", "to_wallet_id": "W2", "amount": "11"},
            ],
        },
    )
    assert reordered.status_code == 201, reordered.text
    transaction = reordered.json()["transaction"]
    assert transaction["status"] == "Completed"
    assert reordered.headers["Location"] == f"/projects/{project}/transactions/{transaction['transaction_id']}"
    assert [(e["wallet_id"], e["type"], e["amount"], e["balance_after"]) for e in transaction["entries"]] == [
        ("W1", "Issue", "6.00", "11.00"),
        ("W1", "Debit", "11.00", "0.00"),
        ("W2", "Credit", "11.00", "18.00"),
    ]
    assert api.get(f"/projects/{project}/wallets/W1").json()["balance"] == "0.00"
    assert api.get(f"/projects/{project}/wallets/W2").json()["balance"] == "18.00"

    # Both are recorded; the failed one says which operation failed and why.
    failed = api.get(f"/projects/{project}/transactions", params={"reference_id": "w1w2-first"}).json()["items"]
    assert len(failed) == 1 and failed[0]["error"]["code"] == "InsufficientFunds" and failed[0]["error"]["operation_index"] == 0
    got = api.get(f"/projects/{project}/transactions/{transaction['transaction_id']}").json()
    assert got["entries"] == transaction["entries"] and got["operations"][0] == {"type": "Issue", "wallet_id": "W1", "amount": "6"}


# --- projects ------------------------------------------------------------------------------


def test_projects(api: Api) -> None:
    project = unique("proj")
    created = api.post("/projects", json={"project_id": project, "name": "First"})
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == f"/projects/{project}"
    assert created.json()["project"] == {"project_id": project, "name": "First", "created_at": created.json()["project"]["created_at"], "assets": []}

    again = api.post("/projects", json={"project_id": project, "name": "Again"})
    assert again.status_code == 409 and error_code(again) == "ProjectAlreadyExists"

    # Without an ID the project's ID is derived from the reference ID (Idempotency-Key here).
    reference = unique("ref-")
    derived = api.post("/projects", json={"name": "Derived"}, headers={"Idempotency-Key": reference})
    assert derived.status_code == 201, derived.text
    derived_id = derived.json()["project"]["project_id"]
    assert derived.json()["reference_id"] == reference
    repeat = api.post("/projects", json={"name": "Derived"}, headers={"Idempotency-Key": reference})
    assert repeat.status_code == 409 and error_code(repeat) == "DuplicateReferenceId"
    assert repeat.json()["original"]["project"]["project_id"] == derived_id

    mismatch = api.post("/projects", json={"name": "x", "reference_id": "a"}, headers={"Idempotency-Key": "b"})
    assert mismatch.status_code == 422 and fields_of(mismatch) == ["header.Idempotency-Key"]

    renamed = api.put(f"/projects/{project}/name", json={"name": "Renamed"})
    assert renamed.status_code == 200 and renamed.json()["project"]["name"] == "Renamed"
    api.ok("POST", f"/projects/{project}/assets", json={"asset_id": "pts", "code": "PTS", "name": "Points", "fractions": 1}, expect=201)
    got = api.get(f"/projects/{project}").json()
    assert got["name"] == "Renamed" and [a["asset_id"] for a in got["assets"]] == ["pts"]

    listed: list[str] = []
    page = 1
    while True:
        body = api.get("/projects", params={"page": page, "page_size": 2}).json()
        assert body["page"] == page and body["page_size"] == 2 and len(body["items"]) <= 2
        listed += [p["project_id"] for p in body["items"]]
        if not body["has_more"]:
            break
        page += 1
    assert project in listed and derived_id in listed and listed == sorted(listed)

    missing = api.get("/projects/no-such-project")
    assert missing.status_code == 404 and error_code(missing) == "ProjectNotFound"
    rename_missing = api.put("/projects/no-such-project/name", json={"name": "x"})
    assert rename_missing.status_code == 404 and rename_missing.json()["error"]["code"] == "ProjectNotFound"
    bad_id = api.get("/projects/bad id!")
    assert bad_id.status_code == 422 and fields_of(bad_id) == ["path.projectId"]
    too_long = api.post("/projects", json={"project_id": "x" * 31, "name": "x"})
    assert too_long.status_code == 422 and fields_of(too_long) == ["body.project_id"]


# --- assets --------------------------------------------------------------------------------


def test_assets(api: Api) -> None:
    project = unique("asset")
    api.ok("POST", "/projects", json={"project_id": project, "name": "Assets"}, expect=201)
    created = api.post(f"/projects/{project}/assets", json={"asset_id": "usd", "code": "USD", "name": "Dollar"})
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == f"/projects/{project}/currencies/usd"
    assert created.json()["asset"] == {"project_id": project, "asset_id": "usd", "code": "USD", "name": "Dollar", "fractions": 100, "in_use": False}
    api.ok("POST", f"/projects/{project}/assets", json={"asset_id": "eur", "code": "EUR", "name": "Euro"}, expect=201)
    api.ok("POST", f"/projects/{project}/assets", json={"asset_id": "gold", "code": "AU", "name": "Gold", "fractions": 1000}, expect=201)

    duplicate = api.post(f"/projects/{project}/assets", json={"asset_id": "usd", "code": "USD", "name": "Again"})
    assert duplicate.status_code == 409 and error_code(duplicate) == "AssetAlreadyExists"
    bad_fractions = api.post(f"/projects/{project}/assets", json={"code": "X", "name": "X", "fractions": 3})
    assert bad_fractions.status_code == 422 and fields_of(bad_fractions) == ["body.fractions"]

    first = api.get(f"/projects/{project}/assets", params={"page_size": 2}).json()
    second = api.get(f"/projects/{project}/assets", params={"page_size": 2, "page": 2}).json()
    assert [a["asset_id"] for a in first["items"]] == ["eur", "gold"] and first["has_more"]
    assert [a["asset_id"] for a in second["items"]] == ["usd"] and not second["has_more"]

    renamed = api.put(f"/projects/{project}/currencies/eur/name", json={"name": "Euro (EUR)"})
    assert renamed.status_code == 200 and renamed.json()["asset"]["name"] == "Euro (EUR)"
    assert api.get(f"/projects/{project}/currencies/eur").json()["name"] == "Euro (EUR)"
    rename_missing = api.put(f"/projects/{project}/currencies/nope/name", json={"name": "x"})
    assert rename_missing.status_code == 404 and error_code(rename_missing) == "AssetNotFound"

    deleted = api.delete(f"/projects/{project}/currencies/eur")
    assert deleted.status_code == 200 and deleted.json()["status"] == "Completed"
    gone = api.get(f"/projects/{project}/currencies/eur")
    assert gone.status_code == 404 and error_code(gone) == "AssetNotFound"
    delete_missing = api.delete(f"/projects/{project}/currencies/eur")
    assert delete_missing.status_code == 404 and error_code(delete_missing) == "AssetNotFound"

    open_system_wallet(api, project, "fees")
    in_use = api.delete(f"/projects/{project}/currencies/usd", headers={"Idempotency-Key": "del-usd"})
    assert in_use.status_code == 409 and error_code(in_use) == "AssetInUse"
    assert api.get(f"/projects/{project}/currencies/usd").json()["in_use"] is True
    again = api.delete(f"/projects/{project}/currencies/usd", headers={"Idempotency-Key": "del-usd"})
    assert again.status_code == 409 and error_code(again) == "DuplicateReferenceId"
    assert again.json()["original"]["error"]["code"] == "AssetInUse"

    unknown_project = api.get("/projects/no-such-project/assets")
    assert unknown_project.status_code == 404 and error_code(unknown_project) == "ProjectNotFound"


# --- customers ------------------------------------------------------------------------------


def test_customers(api: Api) -> None:
    project = unique("cust")
    setup_project(api, project)
    alice = "alice@example.com"
    created = api.post(f"/projects/{project}/customers", json={"customer_id": alice, "name": "Alice"})
    assert created.status_code == 200, created.text
    assert created.json()["customer"] == {"project_id": project, "customer_id": alice, "name": "Alice", "description": "", "status": "Active", "metadata": {}}
    # PUT is the same upsert; only the given fields change.
    updated = api.put(f"/projects/{project}/customers/{alice}", json={"description": "VIP"})
    assert updated.status_code == 200 and updated.json()["customer"]["name"] == "Alice" and updated.json()["customer"]["description"] == "VIP"
    spaced = "bob the builder"
    api.ok("PUT", f"/projects/{project}/customers/{quote(spaced)}", json={"name": "Bob"})
    api.ok("POST", f"/projects/{project}/customers", json={"customer_id": "carol"})
    assert api.get(f"/projects/{project}/customers/{quote(spaced)}").json()["name"] == "Bob"

    first = api.get(f"/projects/{project}/customers", params={"page_size": 2}).json()
    second = api.get(f"/projects/{project}/customers", params={"page_size": 2, "page": 2}).json()
    assert [c["customer_id"] for c in first["items"] + second["items"]] == [alice, spaced, "carol"]
    assert first["has_more"] and not second["has_more"]

    wallet = api.post(f"/projects/{project}/wallets", json={"customer_id": alice, "asset_id": "usd", "wallet_id": "alice-usd"})
    assert wallet.status_code == 201
    api.ok("POST", f"/projects/{project}/wallets", json={"customer_id": alice, "asset_id": "usd", "wallet_id": "alice-2"}, expect=201)
    issue(api, project, "alice-usd", "3.50")

    suspended = api.put(f"/projects/{project}/customers/{alice}/suspend")
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["customer"]["status"] == "Suspended"
    assert sorted(w["wallet_id"] for w in suspended.json()["wallets"]) == ["alice-2", "alice-usd"]
    blocked = api.post(f"/projects/{project}/wallets", json={"customer_id": alice, "asset_id": "usd"})
    assert blocked.status_code == 409 and error_code(blocked) == "CustomerSuspended"
    no_open = api.put(f"/projects/{project}/wallets/alice-usd/status", json={"status": "Open"})
    assert no_open.status_code == 409 and error_code(no_open) == "CustomerSuspended"
    frozen = api.post(
        f"/projects/{project}/transactions", json={"reference_id": unique("t-"), "operations": [{"type": "Redeem", "wallet_id": "alice-usd", "amount": "1"}]}
    )
    assert frozen.status_code == 409 and error_code(frozen) == "WalletNotOpen"

    resumed = api.put(f"/projects/{project}/customers/{alice}/resume", json={"reference_id": unique("resume-")})
    assert resumed.status_code == 200 and resumed.json()["customer"]["status"] == "Active"
    # Resuming the customer does not resume the wallets.
    assert api.get(f"/projects/{project}/wallets/alice-usd").json()["status"] == "Suspended"

    has_wallets = api.delete(f"/projects/{project}/customers/{alice}")
    assert has_wallets.status_code == 409 and error_code(has_wallets) == "CustomerHasOpenWallets"
    api.ok("PUT", f"/projects/{project}/wallets/alice-usd/status", json={"status": "Open"})
    api.ok(
        "POST",
        f"/projects/{project}/transactions",
        json={"reference_id": unique("empty-"), "operations": [{"type": "Redeem", "wallet_id": "alice-usd", "amount": "3.5"}]},
        expect=201,
    )
    for wallet_id in ("alice-usd", "alice-2"):
        api.ok("PUT", f"/projects/{project}/wallets/{wallet_id}/status", json={"status": "Closed"})
    deleted = api.delete(f"/projects/{project}/customers/{alice}")
    assert deleted.status_code == 200, deleted.text
    gone = api.get(f"/projects/{project}/customers/{alice}")
    assert gone.status_code == 404 and error_code(gone) == "CustomerNotFound"
    # The closed wallets remain as history.
    history = api.get(f"/projects/{project}/customers/{alice}/wallets").json()["items"]
    assert {w["status"] for w in history} == {"Closed"}

    for method, path in (("PUT", "suspend"), ("PUT", "resume"), ("DELETE", "")):
        missing = api.request(method, f"/projects/{project}/customers/nobody/{path}".rstrip("/"))
        assert missing.status_code == 404 and error_code(missing) == "CustomerNotFound", (method, path, missing.text)
    nobody_wallets = api.get(f"/projects/{project}/customers/nobody/wallets")
    assert nobody_wallets.status_code == 404 and error_code(nobody_wallets) == "CustomerNotFound"
    wallet_for_nobody = api.post(f"/projects/{project}/wallets", json={"customer_id": "nobody", "asset_id": "usd"})
    assert wallet_for_nobody.status_code == 404 and error_code(wallet_for_nobody) == "CustomerNotFound"
    blank = api.get(f"/projects/{project}/customers/{quote('   ')}")
    assert blank.status_code == 422 and fields_of(blank) == ["path.customerId"]
    blank_write = api.put(f"/projects/{project}/customers/{quote('   ')}", json={})
    assert blank_write.status_code == 422 and fields_of(blank_write) == ["path.customerId"]


# --- wallets -------------------------------------------------------------------------------


def test_wallets(api: Api) -> None:
    project = unique("wal")
    setup_project(api, project)
    api.ok("POST", f"/projects/{project}/assets", json={"asset_id": "pts", "code": "PTS", "name": "Points", "fractions": 1}, expect=201)
    api.ok("POST", f"/projects/{project}/customers", json={"customer_id": "dave"})

    opened = api.post(
        f"/projects/{project}/wallets", json={"customer_id": "dave", "asset_id": "usd", "wallet_id": "dave-1", "name": "Main", "description": "d"}
    )
    assert opened.status_code == 201, opened.text
    assert opened.headers["Location"] == f"/projects/{project}/wallets/dave-1"
    assert opened.json()["wallet"]["balance"] == "0.00" and opened.json()["wallet"]["status"] == "Open"
    derived = api.post(f"/projects/{project}/wallets", json={"customer_id": "dave", "asset_id": "pts"})
    assert derived.status_code == 201
    derived_id = derived.json()["wallet"]["wallet_id"]
    exists = api.post(f"/projects/{project}/wallets", json={"customer_id": "dave", "asset_id": "usd", "wallet_id": "dave-1"})
    assert exists.status_code == 409 and error_code(exists) == "WalletAlreadyExists"
    no_asset = api.post(f"/projects/{project}/wallets", json={"customer_id": "dave", "asset_id": "nope"})
    assert no_asset.status_code == 404 and error_code(no_asset) == "AssetNotFound"

    system = api.post(f"/projects/{project}/system-wallets", json={"asset_id": "usd", "wallet_id": "fees", "name": "Fees"})
    assert system.status_code == 201 and system.json()["wallet"]["customer_id"] is None
    open_system_wallet(api, project, "bonus", asset="pts")
    systems = api.get(f"/projects/{project}/system-wallets").json()
    assert [w["wallet_id"] for w in systems["items"]] == ["bonus", "fees"]
    mine = api.get(f"/projects/{project}/customers/dave/wallets").json()
    assert sorted(w["wallet_id"] for w in mine["items"]) == sorted(["dave-1", derived_id])

    assert api.put(f"/projects/{project}/wallets/dave-1/name", json={"name": "Renamed"}).json()["wallet"]["name"] == "Renamed"
    assert api.put(f"/projects/{project}/wallets/dave-1/description", json={"description": ""}).json()["wallet"]["description"] == ""
    got = api.get(f"/projects/{project}/wallets/dave-1").json()
    assert (got["name"], got["description"], got["customer_id"], got["asset_id"]) == ("Renamed", "", "dave", "usd")

    issue(api, project, "dave-1", "1.25")
    assert api.put(f"/projects/{project}/wallets/dave-1/status", json={"status": "Suspended"}).json()["wallet"]["status"] == "Suspended"
    assert api.get(f"/projects/{project}/wallets/dave-1").json()["balance"] == "1.25"
    assert api.put(f"/projects/{project}/wallets/dave-1/status", json={"status": "Open"}).status_code == 200
    not_empty = api.put(f"/projects/{project}/wallets/dave-1/status", json={"status": "Closed"})
    assert not_empty.status_code == 409 and error_code(not_empty) == "WalletNotEmpty"
    mismatch = api.post(
        f"/projects/{project}/transactions",
        json={"reference_id": unique("mm-"), "operations": [{"type": "Transfer", "from_wallet_id": "dave-1", "to_wallet_id": "bonus", "amount": "1"}]},
    )
    assert mismatch.status_code == 422 and error_code(mismatch) == "AssetMismatch"
    assert api.put(f"/projects/{project}/wallets/{derived_id}/status", json={"status": "Closed"}).status_code == 200
    closed = api.put(f"/projects/{project}/wallets/{derived_id}/status", json={"status": "Open"})
    assert closed.status_code == 409 and error_code(closed) == "WalletClosed"
    bad_status = api.put(f"/projects/{project}/wallets/dave-1/status", json={"status": "Frozen"})
    assert bad_status.status_code == 422 and fields_of(bad_status) == ["body.status"]

    missing = api.get(f"/projects/{project}/wallets/nope")
    assert missing.status_code == 404 and error_code(missing) == "WalletNotFound"
    missing_write = api.put(f"/projects/{project}/wallets/nope/name", json={"name": "x"})
    assert missing_write.status_code == 404 and error_code(missing_write) == "WalletNotFound"
    missing_entries = api.get(f"/projects/{project}/wallets/nope/entries")
    assert missing_entries.status_code == 404 and error_code(missing_entries) == "WalletNotFound"
    bad_wallet = api.put(f"/projects/{project}/wallets/{quote('no/pe!')}/name", json={"name": "x"})
    assert bad_wallet.status_code in (404, 422)
    bad_wallet = api.put(f"/projects/{project}/wallets/{quote('nope!')}/name", json={"name": "x"})
    assert bad_wallet.status_code == 422 and fields_of(bad_wallet) == ["path.walletId"]
    unknown_project = api.get("/projects/no-such-project/system-wallets")
    assert unknown_project.status_code == 404 and error_code(unknown_project) == "ProjectNotFound"


# --- transactions, entries, paging, time filters ---------------------------------------------


def test_transactions_entries_paging_and_time_filters(api: Api, stack: GatewayStack) -> None:
    project = unique("tx")
    setup_project(api, project)
    for wallet in ("a", "b"):
        open_system_wallet(api, project, wallet)

    transactions = []
    for i in range(7):
        response = api.post(
            f"/projects/{project}/transactions",
            json={
                "reference_id": f"t{i}",
                "description": f"number {i}",
                "operations": [
                    {"type": "Issue", "wallet_id": "a", "amount": f"{i + 1}.10"},
                    {"type": "Transfer", "from_wallet_id": "a", "to_wallet_id": "b", "amount": "0.1"},
                ],
            },
        )
        assert response.status_code == 201, response.text
        transactions.append(response.json()["transaction"])
        time.sleep(0.01)  # distinct created_at (each is its own batch anyway)
    ids = [t["transaction_id"] for t in transactions]

    pages = [api.get(f"/projects/{project}/transactions", params={"page": n, "page_size": 3}).json() for n in (1, 2, 3)]
    assert [len(p["items"]) for p in pages] == [3, 3, 1] and [p["has_more"] for p in pages] == [True, True, False]
    assert [t["transaction_id"] for p in pages for t in p["items"]] == ids
    assert pages[0]["items"][0]["entries"] == transactions[0]["entries"]
    assert api.get(f"/projects/{project}/transactions", params={"page": 4, "page_size": 3}).json()["items"] == []

    # [from, to): from inclusive, to exclusive.
    window = api.get(
        f"/projects/{project}/transactions", params={"from": transactions[2]["created_at"], "to": transactions[5]["created_at"]}
    ).json()
    assert [t["transaction_id"] for t in window["items"]] == ids[2:5]
    later = datetime.fromisoformat(transactions[-1]["created_at"]) + timedelta(seconds=1)
    assert api.get(f"/projects/{project}/transactions", params={"from": later.isoformat()}).json()["items"] == []
    naive_utc = datetime.fromisoformat(transactions[3]["created_at"]).replace(tzinfo=None).isoformat()
    assert [t["transaction_id"] for t in api.get(f"/projects/{project}/transactions", params={"from": naive_utc}).json()["items"]] == ids[3:]

    by_reference = api.get(f"/projects/{project}/transactions", params={"reference_id": "t4"}).json()
    assert [t["transaction_id"] for t in by_reference["items"]] == [ids[4]]
    assert api.get(f"/projects/{project}/transactions", params={"reference_id": "never"}).json()["items"] == []
    got = api.get(f"/projects/{project}/transactions/{ids[1]}").json()
    assert got["reference_id"] == "t1" and got["description"] == "number 1" and got["status"] == "Completed"
    missing = api.get(f"/projects/{project}/transactions/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and error_code(missing) == "TransactionNotFound"

    # Wallet a: 7 Issues and 7 Debits, in (created_at, entry_id) order, balance_after adds up.
    entries = []
    page = 1
    while True:
        body = api.get(f"/projects/{project}/wallets/a/entries", params={"page": page, "page_size": 4}).json()
        entries += body["items"]
        if not body["has_more"]:
            break
        page += 1
    assert page == 4 and len(entries) == 14
    assert [e["type"] for e in entries] == ["Issue", "Debit"] * 7
    assert [e["transaction_id"] for e in entries[::2]] == ids
    assert entries[0]["amount"] == "1.10" and entries[0]["balance_after"] == "1.10" and entries[1]["balance_after"] == "1.00"
    assert entries[-1]["balance_after"] == api.get(f"/projects/{project}/wallets/a").json()["balance"] == "28.00"
    ranged = api.get(
        f"/projects/{project}/wallets/b/entries", params={"from": transactions[1]["created_at"], "to": transactions[3]["created_at"]}
    ).json()["items"]
    assert [(e["type"], e["transaction_id"], e["balance_after"]) for e in ranged] == [("Credit", ids[1], "0.20"), ("Credit", ids[2], "0.30")]

    # The balance at an instant: the last entry at or before it (tx 3's Issue and Debit share its created_at).
    at_tx3 = api.get(f"/projects/{project}/wallets/a/balance", params={"at": transactions[3]["created_at"]}).json()
    assert (at_tx3["balance"], at_tx3["held"], at_tx3["available"]) == (entries[7]["balance_after"], "0.00", entries[7]["balance_after"])
    assert api.get(f"/projects/{project}/wallets/a/balance").json()["balance"] == "28.00"
    # A statement of [tx 2, tx 5): the balance before each end, the entries between, and they add up.
    statement = api.get(
        f"/projects/{project}/wallets/a/statement", params={"from": transactions[2]["created_at"], "to": transactions[5]["created_at"], "page_size": 50}
    ).json()
    assert statement["opening_balance"] == entries[3]["balance_after"] and statement["closing_balance"] == entries[9]["balance_after"]
    assert [e["entry_id"] for e in statement["entries"]["items"]] == [e["entry_id"] for e in entries[4:10]]
    signed = sum((Decimal(e["amount"]) if e["type"] in ("Issue", "Credit") else -Decimal(e["amount"])) for e in statement["entries"]["items"])
    assert Decimal(statement["opening_balance"]) + signed == Decimal(statement["closing_balance"])

    # Bad parameters name the parameter.
    for params, field in (
        ({"page_size": 501}, "query.page_size"),
        ({"page_size": 0}, "query.page_size"),
        ({"page": 0}, "query.page"),
        ({"page": "x"}, "query.page"),
        ({"from": "yesterday"}, "query.from"),
        ({"to": "2024-13-01"}, "query.to"),
        ({"from": "2025-01-02T00:00:00Z", "to": "2025-01-01T00:00:00Z"}, "query.from"),
    ):
        for path in ("transactions", "wallets/a/entries"):
            response = api.get(f"/projects/{project}/{path}", params=params)
            assert response.status_code == 422 and fields_of(response) == [field], (path, params, response.text)

    # Writes: malformed input is refused before anything is published, naming the field.
    def post(body: dict | str, **kwargs) -> httpx.Response:
        if isinstance(body, str):
            return api.post(f"/projects/{project}/transactions", content=body, headers={"content-type": "application/json"})
        return api.post(f"/projects/{project}/transactions", json=body, **kwargs)

    issue_one = [{"type": "Issue", "wallet_id": "a", "amount": "1"}]
    cases = [
        ({"operations": issue_one}, ["body.reference_id"], None),
        ({"reference_id": "x", "operations": []}, ["body.operations"], None),
        ({"reference_id": "x", "operations": issue_one, "extra": 1}, ["body.extra"], None),
        ({"reference_id": "x", "operations": [*issue_one, {"type": "Issue", "wallet_id": "a", "amount": 1.5}]}, ["body.operations.1.amount"], 1),
        ({"reference_id": "x", "operations": [{"type": "Issue", "wallet_id": "a", "amount": "-1"}]}, ["body.operations.0.amount"], 0),
        ({"reference_id": "x", "operations": [{"type": "Burn", "wallet_id": "a", "amount": "1"}]}, ["body.operations.0"], 0),
        ({"reference_id": "x", "operations": [{"type": "Transfer", "from_wallet_id": "a", "to_wallet_id": "a", "amount": "1"}]}, ["body.operations.0"], 0),
        ({"reference_id": "", "operations": issue_one}, ["body.reference_id"], None),
    ]
    for body, fields, operation_index in cases:
        response = post(body)
        assert response.status_code == 422, (body, response.text)
        assert fields_of(response) == fields and response.json()["error"]["operation_index"] == operation_index, (body, response.text)
    assert post("{not json").status_code == 422 and fields_of(post("{not json")) == ["body"]
    assert post("[]").status_code == 422
    form = api.post(f"/projects/{project}/transactions", content="a=b", headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and error_code(form) == "UnsupportedMediaType"

    # Too many decimals for the asset: the processor's ValidationError, with the operation index.
    scale = post({"reference_id": unique("scale-"), "operations": [*issue_one, {"type": "Issue", "wallet_id": "a", "amount": "0.001"}]})
    assert scale.status_code == 422 and error_code(scale) == "ValidationError" and scale.json()["error"]["operation_index"] == 1
    assert scale.json()["transaction"]["status"] == "Failed"
    unknown_wallet = post({"reference_id": unique("unk-"), "operations": [{"type": "Issue", "wallet_id": "ghost", "amount": "1"}]})
    assert unknown_wallet.status_code == 404 and error_code(unknown_wallet) == "WalletNotFound"
    duplicate = post({"reference_id": "t0", "operations": issue_one})
    assert duplicate.status_code == 409 and error_code(duplicate) == "DuplicateReferenceId"
    assert duplicate.json()["original"]["transaction"]["transaction_id"] == ids[0]
    api.ok("POST", f"/projects/{project}/assets", json={"asset_id": "wei", "code": "WEI", "name": "Wei", "fractions": 10**18}, expect=201)
    open_system_wallet(api, project, "big", asset="wei")
    too_big = post(
        {
            "reference_id": unique("big-"),
            "operations": [{"type": "Issue", "wallet_id": "big", "amount": "9" * 20}, {"type": "Issue", "wallet_id": "big", "amount": "1"}],
        }
    )
    assert too_big.status_code == 409 and error_code(too_big) == "BalanceLimitExceeded" and too_big.json()["error"]["operation_index"] == 1

    # The stored result of any write, by reference (where a 202's Location points).
    stored = api.get(f"/projects/{project}/requests/t3")
    assert stored.status_code == 200 and stored.json()["transaction"]["transaction_id"] == ids[3]
    not_yet = api.get(f"/projects/{project}/requests/{quote('no/such ref', safe='')}")
    assert not_yet.status_code == 404 and error_code(not_yet) == "RequestNotFound"

    # Routing errors are errors in the same shape.
    assert error_code(api.get("/nowhere")) == "NotFound"
    method = api.patch(f"/projects/{project}/transactions")
    assert method.status_code == 405 and error_code(method) == "MethodNotAllowed"


# --- access rules -----------------------------------------------------------------------------


def test_access_rules(stack: GatewayStack) -> None:
    operator = stack.api()
    project, other = unique("acc"), unique("oth")
    for p in (project, other):
        setup_project(operator, p)
        operator.ok("POST", f"/projects/{p}/customers", json={"customer_id": "erin"})
        operator.ok("POST", f"/projects/{p}/customers", json={"customer_id": "frank"})
        operator.ok("POST", f"/projects/{p}/wallets", json={"customer_id": "erin", "asset_id": "usd", "wallet_id": "erin-w"}, expect=201)
        operator.ok("POST", f"/projects/{p}/wallets", json={"customer_id": "frank", "asset_id": "usd", "wallet_id": "frank-w"}, expect=201)
        open_system_wallet(operator, p, "sys")
        issue(operator, p, "erin-w", "2")

    project_api = stack.api(stack.key("project", project=project))
    customer_api = stack.api(stack.key("customer", project=project, customer="erin"))
    anonymous = Api(stack.base_url, None)
    garbage = stack.api("cwk_" + "x" * 43)

    # 401: no key, an unknown key, a revoked key.
    engine = sa.create_engine(stack.database_url)
    try:
        revoked = create_key(engine, kind="operator")
        assert revoke_key(engine, revoked.key_id)
        used_then_revoked = create_key(engine, kind="project", project_id=project)
        assert stack.api(used_then_revoked.token).get(f"/projects/{project}").status_code == 200
        revoke_key(engine, used_then_revoked.key_id)
    finally:
        engine.dispose()
    for client in (anonymous, garbage, stack.api(revoked.token), stack.api(used_then_revoked.token)):
        for method, path in (("GET", "/projects"), ("GET", f"/projects/{project}/wallets/erin-w"), ("POST", "/projects")):
            response = client.request(method, path, json={"name": "x"} if method == "POST" else None)
            assert response.status_code == 401 and error_code(response) == "Unauthorized", (method, path, response.text)
            assert response.headers["WWW-Authenticate"].startswith("ApiKey")

    # Every endpoint class, for the project key and the customer key, own project vs another.
    reads_own = [
        f"/projects/{project}",
        f"/projects/{project}/assets",
        f"/projects/{project}/currencies/usd",
        f"/projects/{project}/customers",
        f"/projects/{project}/customers/erin",
        f"/projects/{project}/system-wallets",
        f"/projects/{project}/transactions",
        f"/projects/{project}/requests/whatever",
    ]
    customer_reads = [
        f"/projects/{project}/wallets/erin-w",
        f"/projects/{project}/wallets/erin-w/entries",
        f"/projects/{project}/customers/erin/wallets",
    ]
    writes = [
        ("PUT", "/projects/{p}/name", {"name": "x"}),
        ("POST", "/projects/{p}/assets", {"asset_id": unique("a"), "code": "A", "name": "A"}),
        ("PUT", "/projects/{p}/currencies/usd/name", {"name": "Dollar"}),
        ("POST", "/projects/{p}/customers", {"customer_id": "erin"}),
        ("PUT", "/projects/{p}/customers/erin", {"name": "Erin"}),
        ("PUT", "/projects/{p}/customers/frank/resume", None),
        ("PUT", "/projects/{p}/wallets/erin-w/name", {"name": "E"}),
        ("PUT", "/projects/{p}/wallets/erin-w/description", {"description": "E"}),
        ("PUT", "/projects/{p}/wallets/erin-w/status", {"status": "Open"}),
        ("POST", "/projects/{p}/system-wallets", {"asset_id": "usd"}),
        ("POST", "/projects/{p}/wallets", {"customer_id": "frank", "asset_id": "usd"}),
        ("POST", "/projects/{p}/transactions", {"reference_id": unique("r"), "operations": [{"type": "Issue", "wallet_id": "sys", "amount": "1"}]}),
        ("DELETE", "/projects/{p}/currencies/nope", None),
        ("DELETE", "/projects/{p}/customers/nobody", None),
        ("PUT", "/projects/{p}/customers/nobody/suspend", None),
    ]

    forbidden_body = None

    def assert_forbidden(response: httpx.Response, what: object) -> None:
        nonlocal forbidden_body
        assert response.status_code == 403, (what, response.status_code, response.text)
        # One body for every refusal: nothing says whether the thing exists.
        forbidden_body = forbidden_body or response.json()
        assert response.json() == forbidden_body, what

    def elsewhere(path: str) -> list[str]:
        return [path.replace(project, other, 1), path.replace(project, "no-such-project", 1)]

    # The project key: everything in its project, nothing elsewhere, whether it exists or not.
    for path in reads_own + customer_reads:
        assert project_api.get(path).status_code in (200, 404), path
        for foreign in elsewhere(path):
            assert_forbidden(project_api.get(foreign), foreign)
    for method, path, body in writes:
        own = project_api.request(method, path.format(p=project), json=body)
        assert own.status_code < 500 and own.status_code not in (401, 403), (method, path, own.text)
        for target in (other, "no-such-project"):
            assert_forbidden(project_api.request(method, path.format(p=target), json=body), (method, path, target))
    assert [p["project_id"] for p in project_api.get("/projects").json()["items"]] == [project]
    assert_forbidden(project_api.post("/projects", json={"name": "x"}), "create project")

    # The customer key: read-only, its own wallets and their entries, nothing else.
    assert customer_api.get(f"/projects/{project}/wallets/erin-w").json()["balance"] == "2.00"
    assert [e["type"] for e in customer_api.get(f"/projects/{project}/wallets/erin-w/entries").json()["items"]] == ["Issue"]
    assert [w["wallet_id"] for w in customer_api.get(f"/projects/{project}/customers/erin/wallets").json()["items"]] == ["erin-w"]
    for path in (
        f"/projects/{project}/wallets/frank-w",
        f"/projects/{project}/wallets/frank-w/entries",
        f"/projects/{project}/wallets/sys",
        f"/projects/{project}/wallets/no-such-wallet",
        f"/projects/{project}/wallets/no-such-wallet/entries",
        f"/projects/{project}/customers/frank/wallets",
        f"/projects/{project}/customers/nobody/wallets",
        *reads_own,
        "/projects",
    ):
        assert_forbidden(customer_api.get(path), path)
    for path in customer_reads:
        for foreign in elsewhere(path):
            assert_forbidden(customer_api.get(foreign), foreign)
    for method, path, body in writes:
        assert_forbidden(customer_api.request(method, path.format(p=project), json=body), (method, path))
    assert_forbidden(customer_api.post("/projects", json={"name": "x"}), "create project")

    # The operator key: every project.
    for p in (project, other):
        assert operator.get(f"/projects/{p}/wallets/frank-w").status_code == 200
    assert {project, other} <= {p["project_id"] for p in operator.get("/projects", params={"page_size": 500}).json()["items"]}

    # The OpenAPI document names the key scheme.
    schemes = anonymous.get("/openapi.json").json()["components"]["securitySchemes"]
    assert [(s["type"], s["in"], s["name"]) for s in schemes.values()] == [("apiKey", "header", "X-Api-Key")]


def test_key_and_reach_are_checked_before_the_input(stack: GatewayStack) -> None:
    # 401, then 403, then 422, whatever is wrong with the input (docs/gateway.md, order of checks).
    operator = stack.api()
    project = unique("ord")
    setup_project(operator, project)
    operator.ok("POST", f"/projects/{project}/customers", json={"customer_id": "gina"})
    operator.ok("POST", f"/projects/{project}/wallets", json={"customer_id": "gina", "asset_id": "usd", "wallet_id": "gina-w"}, expect=201)
    customer = stack.api(stack.key("customer", project=project, customer="gina"))
    stranger = stack.api(stack.key("project", project=unique("elsewhere")))
    anonymous = Api(stack.base_url, None)

    # A malformed wallet ID: no customer owns one, so a customer key gets 403; an operator 422.
    bad_wallet = f"/projects/{project}/wallets/{quote('bad!')}"
    for path in (bad_wallet, bad_wallet + "/entries?page_size=0"):
        assert anonymous.get(path).status_code == 401, path
        assert customer.get(path).status_code == 403, path
        assert stranger.get(path).status_code == 403, path
        response = operator.get(path)
        assert response.status_code == 422 and "path.walletId" in fields_of(response), (path, response.text)
    # Its own wallet and customer ID: the input is checked (422); anything else: 403 first.
    assert customer.get(f"/projects/{project}/wallets/gina-w/entries", params={"page_size": 0}).status_code == 422
    assert customer.get(f"/projects/{project}/customers/gina/wallets", params={"page_size": 0}).status_code == 422
    assert customer.get(f"/projects/{project}/customers/other/wallets", params={"page_size": 0}).status_code == 403
    assert customer.get("/projects", params={"page_size": 0}).status_code == 403

    # A body that is not JSON: 401 or 403 before the body is read.
    path = f"/projects/{project}/transactions"
    not_json = {"content": "{not json", "headers": {"content-type": "application/json"}}
    assert anonymous.post(path, **not_json).status_code == 401
    assert customer.post(path, **not_json).status_code == 403
    assert stranger.post(path, **not_json).status_code == 403
    assert stranger.post("/projects", **not_json).status_code == 403
    refused = operator.post(path, **not_json)
    assert refused.status_code == 422 and error_code(refused) == "ValidationError" and fields_of(refused) == ["body"]
    not_utf8 = operator.post(path, content=b'{"reference_id": "\xff"}', headers={"content-type": "application/json"})
    assert not_utf8.status_code == 422 and error_code(not_utf8) == "ValidationError" and fields_of(not_utf8) == ["body"]


def _memory_kib(pid: int, name: str) -> int:
    """VmRSS or VmHWM (the peak) of a Linux process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def test_chunked_bodies_over_the_limit_are_refused_while_they_are_read(stack: GatewayStack) -> None:
    api = stack.api()
    project = unique("big")
    setup_project(api, project)
    pid = stack.gateway.process.pid
    rss_before, peak_before = _memory_kib(pid, "VmRSS"), _memory_kib(pid, "VmHWM")

    for mib in (4, 48):

        def chunks(mib: int = mib) -> Iterator[bytes]:
            piece = b" " * 65536
            for _ in range(mib * 16):
                yield piece

        response = api.post(f"/projects/{project}/transactions", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in response.request.headers
        assert response.status_code == 413 and error_code(response) == "PayloadTooLarge", (mib, response.text)
    # Nothing was buffered past the limit (1 MiB by default) nor parsed: reading the 48 MiB whole
    # had raised the peak by about 90 MiB. (A peak the gateway reached before is no failure.)
    assert _memory_kib(pid, "VmHWM") <= max(peak_before, rss_before + 32 * 1024)
    declared = api.post(f"/projects/{project}/transactions", content=b" " * (2 * 1_048_576), headers={"content-type": "application/json"})
    assert declared.status_code == 413 and error_code(declared) == "PayloadTooLarge"


def test_gateway_key_cli(stack: GatewayStack) -> None:
    project = unique("cli")
    setup_project(stack.api(), project)
    env = {**stack.topology.env(role="gateway"), "PATH": "/usr/bin:/bin"}  # API keys are the gateway's role's
    created = subprocess.run(
        [sys.executable, "-m", "processor.cli", "gateway-key", "create", "--kind", "project", "--project", project, "--label", "cli"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("cwk_") and len(token) == 47 and "shown only this once" in created.stderr
    assert stack.api(token).get(f"/projects/{project}").status_code == 200
    listed = subprocess.run([sys.executable, "-m", "processor.cli", "gateway-key", "list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and token not in listed.stdout and project in listed.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "processor.cli", "gateway-key", "create", "--kind", "customer", "--project", project],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--customer" in bad.stderr


# --- no result in time: 202, then poll ---------------------------------------------------------


def test_write_without_result_in_time_answers_202_and_the_location_gets_the_result(topology, processors, database_url: str, tmp_path) -> None:
    # A gateway whose processor is not running yet: nothing can answer within the wait.
    gateway = GatewayProcess(topology=topology, log_dir=tmp_path, name="gateway-202", extra_env={"CLOUDWALLET_RESULT_WAIT_SECONDS": "0.5"})
    try:
        gateway.wait_ready()
        engine = sa.create_engine(database_url)
        try:
            api = Api(gateway.base_url, create_key(engine, kind="operator").token)
        finally:
            engine.dispose()
        project = unique("late")
        pending = api.post("/projects", json={"project_id": project, "name": "Late"}, headers={"Idempotency-Key": "create-late"})
        assert pending.status_code == 202, pending.text
        assert pending.json() == {
            "reference_id": "create-late",
            "project_id": project,
            "type": "project.create",
            "status": "Pending",
            "location": f"/projects/{project}/requests/create-late",
        }
        location = pending.headers["Location"]
        assert location == pending.json()["location"]
        assert api.get(location).status_code == 404  # no project yet

        processors("late")
        deadline = time.monotonic() + 60
        while (polled := api.get(location)).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert polled.status_code == 200, polled.text
        assert polled.json()["status"] == "Completed" and polled.json()["project"]["project_id"] == project
        assert api.get(f"/projects/{project}").json()["name"] == "Late"
    finally:
        gateway.stop()


# --- signing keys: a project's key makes, lists and revokes its own ------------------------------


def _signed_submit(stack: GatewayStack, signing_key: SigningKey, requests: list[dict]) -> list:
    """Publish `requests` straight to Kafka, signed with `signing_key`; their results."""

    async def submit() -> list:
        topology = stack.topology
        async with WalletClient(
            kafka=topology.client_kafka, signing_key=signing_key, requests_topic=topology.requests_topic, results_topic=topology.results_topic
        ) as client:
            return [await client.submit(request, timeout=30) for request in requests]

    return run_async(submit())


def _signing_key_row(stack: GatewayStack, key_id: str) -> sa.Row:
    engine = sa.create_engine(stack.database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.text("SELECT project_id, label, created_at, revoked_at FROM signing_keys WHERE key_id = :k"), {"k": key_id}
            ).one()
    finally:
        engine.dispose()


def test_signing_keys_over_http(stack: GatewayStack) -> None:
    operator = stack.api()
    project, elsewhere = unique("sig"), unique("sigx")
    setup_project(operator, project)
    setup_project(operator, elsewhere)
    owner = stack.api(stack.key("project", project=project))
    path = f"/projects/{project}/signing-keys"

    # Reach: the project's own key and operator keys; no key 401, customers and strangers 403.
    assert Api(stack.base_url, None).post(path, json={}).status_code == 401
    customer = stack.api(stack.key("customer", project=project, customer="zed"))
    stranger = stack.api(stack.key("project", project=elsewhere))
    for refused in (customer, stranger):
        assert refused.post(path, json={}).status_code == 403
        assert refused.get(path).status_code == 403
        assert refused.delete(f"{path}/0123456789abcdef").status_code == 403

    created = owner.post(path, json={"label": "direct publisher"})
    assert created.status_code == 201, created.text
    assert created.headers["Cache-Control"] == "no-store"
    made = created.json()
    token, key_id = made["token"], made["key_id"]
    assert (made["project_id"], made["label"]) == (project, "direct publisher")
    # Derived from the deployment's master signing secret; the database keeps only its scope.
    assert token == key_for(read_master(stack.topology.signing_master), key_id).token()
    row = _signing_key_row(stack, key_id)
    assert (row.project_id, row.label, row.revoked_at) == (project, "direct publisher", None)
    assert datetime.fromisoformat(made["created_at"]) == row.created_at

    listed = owner.get(path)
    assert listed.status_code == 200, listed.text
    assert [(item["key_id"], item["revoked_at"]) for item in listed.json()["items"]] == [(key_id, None)]
    assert token not in listed.text and "token" not in listed.text
    operator_made = operator.ok("POST", path, json={}, expect=201)  # an operator key reaches it too
    assert [item["key_id"] for item in operator.get(path).json()["items"]] == [operator_made["key_id"], key_id]  # newest first

    # The token signs requests of this project, and of no other.
    signing_key = SigningKey.from_token(token)
    own, foreign = _signed_submit(
        stack,
        signing_key,
        [
            {"type": "customer.upsert", "project_id": project, "customer_id": "direct", "reference_id": "signed-1"},
            {"type": "customer.upsert", "project_id": elsewhere, "customer_id": "direct", "reference_id": "signed-1"},
        ],
    )
    assert own.status.value == "Completed", own
    assert (foreign.status.value, foreign.error.code.value) == ("Failed", "Unauthorized"), foreign
    assert owner.get(f"/projects/{project}/customers/direct").status_code == 200
    assert operator.get(f"/projects/{elsewhere}/customers/direct").status_code == 404

    # Revoked: the row says when, the processor refuses the key, a second revocation finds none.
    revoked = owner.delete(f"{path}/{key_id}")
    assert revoked.status_code == 200, revoked.text
    assert set(revoked.json()) == {"key_id", "revoked_at"} and revoked.json()["key_id"] == key_id
    assert _signing_key_row(stack, key_id).revoked_at == datetime.fromisoformat(revoked.json()["revoked_at"])
    again = owner.delete(f"{path}/{key_id}")
    assert again.status_code == 404 and error_code(again) == "SigningKeyNotFound"
    (after,) = _signed_submit(
        stack, signing_key, [{"type": "customer.upsert", "project_id": project, "customer_id": "late", "reference_id": "signed-2"}]
    )
    assert (after.status.value, after.error.code.value) == ("Failed", "Unauthorized"), after
    states = {item["key_id"]: item["revoked_at"] for item in owner.get(path).json()["items"]}
    assert states[key_id] == revoked.json()["revoked_at"] and states[operator_made["key_id"]] is None

    # Operator signing keys are the CLI's: never listed nor revoked through a project.
    engine = sa.create_engine(stack.database_url)
    try:
        operator_key = create_signing_key(engine, master=read_master(stack.topology.signing_master), project_id=None, label="e2e: not the gateway's")
    finally:
        engine.dispose()
    assert operator_key.key_id not in owner.get(path).text
    refused = operator.delete(f"{path}/{operator_key.key_id}")
    assert refused.status_code == 404 and error_code(refused) == "SigningKeyNotFound"
    assert _signing_key_row(stack, operator_key.key_id).revoked_at is None


# --- reversals (beyond the seed) -----------------------------------------------------------------


def test_a_transaction_is_reversed_once_over_http(api: Api, stack: GatewayStack) -> None:
    project = unique("rev")
    setup_project(api, project)
    for wallet in ("a", "b"):
        open_system_wallet(api, project, wallet)
    paid = api.post(f"/projects/{project}/transactions", json={"reference_id": "pay", "operations": [
        {"type": "Issue", "wallet_id": "a", "amount": "5.00"}, {"type": "Transfer", "from_wallet_id": "a", "to_wallet_id": "b", "amount": "2.00"}]})
    assert paid.status_code == 201, paid.text
    original = paid.json()["transaction"]["transaction_id"]

    undone = api.post(f"/projects/{project}/transactions/{original}/reversal", json={"description": "refund"})
    assert undone.status_code == 201, undone.text
    reversal = undone.json()["transaction"]
    assert reversal["reverses"] == original and reversal["description"] == "refund"
    assert undone.headers["Location"] == f"/projects/{project}/transactions/{reversal['transaction_id']}"
    assert [(e["type"], e["wallet_id"], e["amount"]) for e in reversal["entries"]] == [("Debit", "b", "2.00"), ("Credit", "a", "2.00"), ("Redeem", "a", "5.00")]
    assert [api.get(f"/projects/{project}/wallets/{w}").json()["balance"] for w in ("a", "b")] == ["0.00", "0.00"]
    assert api.get(f"/projects/{project}/transactions/{original}").json()["reversed_by"] == reversal["transaction_id"]

    again = api.post(f"/projects/{project}/transactions/{original}/reversal", json={})
    assert again.status_code == 409 and error_code(again) == "TransactionAlreadyReversed"
    of_reversal = api.post(f"/projects/{project}/transactions/{reversal['transaction_id']}/reversal", json={})
    assert of_reversal.status_code == 409 and error_code(of_reversal) == "TransactionNotReversible"
    unknown = api.post(f"/projects/{project}/transactions/00000000-0000-5000-8000-000000000000/reversal", json={})
    assert unknown.status_code == 404 and error_code(unknown) == "TransactionNotFound"


# --- holds (beyond the seed) ---------------------------------------------------------------------


def test_holds_over_http_reserve_capture_void_and_expire_by_log_time(api: Api, stack: GatewayStack) -> None:
    project = unique("hold")
    setup_project(api, project)
    for wallet in ("a", "b"):
        open_system_wallet(api, project, wallet)
    funded = api.post(f"/projects/{project}/transactions", json={"reference_id": "fund", "operations": [{"type": "Issue", "wallet_id": "a", "amount": "10.00"}]})
    assert funded.status_code == 201, funded.text

    made = api.post(f"/projects/{project}/holds", json={"reference_id": "h", "hold_id": "h1", "wallet_id": "a", "to_wallet_id": "b", "amount": "6.00"})
    assert made.status_code == 201, made.text
    assert made.headers["Location"] == f"/projects/{project}/holds/h1" and made.json()["hold"]["status"] == "Active"
    wallet = api.get(f"/projects/{project}/wallets/a").json()
    assert (wallet["balance"], wallet["held"], wallet["available"]) == ("10.00", "6.00", "4.00")
    short = api.post(f"/projects/{project}/transactions", json={"reference_id": "t", "operations": [{"type": "Redeem", "wallet_id": "a", "amount": "5.00"}]})
    assert short.status_code == 409 and error_code(short) == "InsufficientFunds"
    too_much = api.post(f"/projects/{project}/holds/h1/capture", json={"amount": "6.01"})
    assert too_much.status_code == 409 and error_code(too_much) == "HoldAmountExceeded", too_much.text
    captured = api.post(f"/projects/{project}/holds/h1/capture", json={"amount": "2.50"})
    assert captured.status_code == 200, captured.text
    assert [(e["type"], e["wallet_id"], e["amount"]) for e in captured.json()["transaction"]["entries"]] == [
        ("Release", "a", "6.00"), ("Debit", "a", "2.50"), ("Credit", "b", "2.50")]
    again = api.post(f"/projects/{project}/holds/h1/void", json={})
    assert again.status_code == 409 and error_code(again) == "HoldNotActive"
    hold = api.get(f"/projects/{project}/holds/h1").json()
    assert (hold["status"], hold["captured"], hold["finished_by"]) == ("Captured", "2.50", captured.json()["transaction"]["transaction_id"])
    assert api.get(f"/projects/{project}/holds/nope").status_code == 404

    # Expiry: the next request touching the wallet, appended after expires_at, releases it first.
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    made = api.post(f"/projects/{project}/holds", json={"reference_id": "h2", "hold_id": "h2", "wallet_id": "a", "amount": "7.50", "expires_at": soon})
    assert made.status_code == 201, made.text
    assert api.get(f"/projects/{project}/wallets/a/holds", params={"status": "Active"}).json()["items"][0]["hold_id"] == "h2"
    time.sleep(2.5)
    spent = api.post(f"/projects/{project}/transactions", json={"reference_id": "t2", "operations": [{"type": "Redeem", "wallet_id": "a", "amount": "7.50"}]})
    assert spent.status_code == 201, spent.text
    late = api.post(f"/projects/{project}/holds/h2/capture", json={})
    assert late.status_code == 409 and error_code(late) == "HoldExpired"
    assert api.get(f"/projects/{project}/holds/h2").json()["status"] == "Expired"
    entries = api.get(f"/projects/{project}/wallets/a/entries").json()["items"]
    assert [(e["type"], e["amount"], e["available_after"]) for e in entries[-2:]] == [("Release", "7.50", "7.50"), ("Redeem", "7.50", "0.00")]
    at_hold = api.get(f"/projects/{project}/wallets/a/balance", params={"at": entries[-3]["created_at"]}).json()
    assert (at_hold["balance"], at_hold["held"], at_hold["available"]) == ("7.50", "7.50", "0.00")


# --- metadata (beyond the seed) ------------------------------------------------------------------


def test_metadata_over_http_is_stored_shown_and_filtered_by(api: Api, stack: GatewayStack) -> None:
    project = unique("meta")
    setup_project(api, project)
    made = api.ok("POST", f"/projects/{project}/system-wallets", json={"asset_id": "usd", "wallet_id": "a", "metadata": {"role": "float"}}, expect=201)
    assert made["wallet"]["metadata"] == {"role": "float"}
    open_system_wallet(api, project, "b")
    order = {"order": "123", "channel": "web"}

    def run(reference: str, metadata: dict[str, str] | None, *operations: dict[str, str]) -> dict:
        body = {"reference_id": reference, "operations": list(operations), **({"metadata": metadata} if metadata is not None else {})}
        return api.ok("POST", f"/projects/{project}/transactions", json=body, expect=201)["transaction"]

    paid = run("paid", order, {"type": "Issue", "wallet_id": "a", "amount": "5.00"})
    assert paid["metadata"] == order
    run("other", {"order": "124"}, {"type": "Transfer", "from_wallet_id": "a", "to_wallet_id": "b", "amount": "1.00"})
    run("plain", None, {"type": "Transfer", "from_wallet_id": "a", "to_wallet_id": "b", "amount": "2.00"})
    held = api.ok("POST", f"/projects/{project}/holds", json={"reference_id": "held", "hold_id": "h1", "wallet_id": "a", "amount": "1.00", "metadata": {"order": "123"}}, expect=201)
    assert held["hold"]["metadata"] == held["transaction"]["metadata"] == {"order": "123"}

    found = api.get(f"/projects/{project}/transactions", params={"metadata.order": "123"})
    assert found.status_code == 200, found.text
    assert [(t["reference_id"], t["metadata"]) for t in found.json()["items"]] == [("paid", order), ("held", {"order": "123"})]
    assert [t["reference_id"] for t in api.get(f"/projects/{project}/transactions", params={"metadata.channel": "web"}).json()["items"]] == ["paid"]
    assert api.get(f"/projects/{project}/transactions", params={"metadata.order": "999"}).json()["items"] == []
    plain = api.get(f"/projects/{project}/transactions", params={"reference_id": "plain"}).json()["items"]
    assert [t["metadata"] for t in plain] == [{}]

    entries = api.get(f"/projects/{project}/wallets/a/entries", params={"metadata.order": "123"})
    assert entries.status_code == 200, entries.text
    assert [(e["type"], e["amount"]) for e in entries.json()["items"]] == [("Issue", "5.00"), ("Hold", "1.00")]
    credited = api.get(f"/projects/{project}/wallets/b/entries", params={"metadata.order": "124"}).json()["items"]
    assert [(e["type"], e["amount"]) for e in credited] == [("Credit", "1.00")]
    two = api.get(f"/projects/{project}/transactions?metadata.order=123&metadata.channel=web")
    assert two.status_code == 422 and error_code(two) == "ValidationError" and fields_of(two) == ["query.metadata.channel"]
    bad = api.get(f"/projects/{project}/wallets/a/entries", params={"metadata.a b": "1"})
    assert bad.status_code == 422 and fields_of(bad) == ["query.metadata.a b"]

    # Reads show it; a rename or an upsert that gives it replaces it whole, one that does not keeps it.
    assert api.get(f"/projects/{project}/holds/h1").json()["metadata"] == {"order": "123"}
    assert api.get(f"/projects/{project}/wallets/a").json()["metadata"] == {"role": "float"}
    api.ok("PUT", f"/projects/{project}/wallets/a/name", json={"name": "Float"})
    assert api.get(f"/projects/{project}/wallets/a").json()["metadata"] == {"role": "float"}
    api.ok("PUT", f"/projects/{project}/wallets/a/name", json={"name": "Float", "metadata": {"team": "ops"}})
    assert api.get(f"/projects/{project}/wallets/a").json()["metadata"] == {"team": "ops"}
    api.ok("POST", f"/projects/{project}/customers", json={"customer_id": "ann", "metadata": {"crm": "7", "tier": "gold"}})
    api.ok("PUT", f"/projects/{project}/customers/ann", json={"name": "Ann"})
    assert api.get(f"/projects/{project}/customers/ann").json()["metadata"] == {"crm": "7", "tier": "gold"}
    api.ok("PUT", f"/projects/{project}/customers/ann", json={"metadata": {"crm": "8"}})
    assert api.get(f"/projects/{project}/customers/ann").json()["metadata"] == {"crm": "8"}
    refund = api.post(f"/projects/{project}/transactions/{paid['transaction_id']}/reversal", json={"metadata": {"refund": "r-1"}})
    assert refund.status_code == 409 and error_code(refund) == "InsufficientFunds"  # a spent 3.00 of the 5.00 since
    assert refund.json()["transaction"]["metadata"] == {"refund": "r-1"}  # recorded Failed, with its own metadata
