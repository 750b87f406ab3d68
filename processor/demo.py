"""`make demo`: the processor on the local stack, sample traffic through Kafka, results shown.

Starts `cloudwallet run` as a child process, sends the seed's vocabulary through the client
library (project, asset, customers, wallets, transactions including the seed's failing W1/W2
example and its fixed order), then what goes beyond the seed (a reversal, a hold captured, a
hold expiring), prints every result, then stops the processor.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from processor.client import WalletClient
from processor.processor_login import grant_topics, processor_environment
from processor.settings import ProcessorSettings, load_or_exit
from schemas.signing import SigningKey
from processor.signing_keys import tool_signing_key
from processor.storage.migrate import upgrade_to_head
from processor.stream.topics import ensure_topics
from schemas.results import EntryType, EntryView, Result
from schemas.ids import derive_transaction_id


EXPIRES_SOON = object()  # a step's expires_at, filled in when the step is sent


def _line(step: str, result: Result) -> str:
    outcome = result.status.value
    if result.error is not None:
        where = f" at operation {result.error.operation_index}" if result.error.operation_index is not None else ""
        outcome += f" {result.error.code.value}{where}: {result.error.message}"
    balances = ""
    if result.transaction is not None and result.transaction.entries:
        balances = "  entries: " + ", ".join(_entry(e) for e in result.transaction.entries)
    elif result.wallet is not None:
        balances = f"  wallet {result.wallet.wallet_id}: {result.wallet.status.value}, balance {result.wallet.balance}"
    if result.hold is not None:
        balances += f"  hold {result.hold.hold_id}: {result.hold.status.value}"
    return f"  {step:<52} {outcome}{balances}"


def _entry(entry: EntryView) -> str:
    if entry.type in (EntryType.Hold, EntryType.Release):  # the balance stays; what is available moves
        return f"{entry.type.value} {entry.wallet_id} {entry.amount} -> available {entry.available_after}"
    return f"{entry.type.value} {entry.wallet_id} {entry.amount} -> {entry.balance_after}"


async def traffic(settings: ProcessorSettings, *, signing_key: SigningKey) -> int:
    run = time.strftime("%H%M%S")
    project = f"demo-{run}"
    w1, w2, fees = f"W1-{run}", f"W2-{run}", f"fees-{run}"
    fee_transaction = derive_transaction_id(project_id=project, reference_id=f"fee-{run}")
    # Expiry is decided by the log time of each request: a capture appended after it is too late.
    # The short hold's expiry is set when it is sent (EXPIRES_SOON), however long the steps before took.
    expiry = datetime.now(UTC)
    steps: list[tuple[str, dict[str, Any] | None]] = [
        ("create project", {"type": "project.create", "project_id": project, "name": "Demo shop"}),
        ("create asset USD (fractions 100)", {"type": "asset.create", "asset_id": "usd", "code": "USD", "name": "US dollar", "fractions": 100}),
        ("upsert customer alice@example.com", {"type": "customer.upsert", "customer_id": "alice@example.com", "name": "Alice"}),
        ("upsert customer 42", {"type": "customer.upsert", "customer_id": "42", "name": "Bob"}),
        ("open W1 for alice", {"type": "wallet.open", "customer_id": "alice@example.com", "asset_id": "usd", "wallet_id": w1}),
        ("open W2 for customer 42", {"type": "wallet.open", "customer_id": "42", "asset_id": "usd", "wallet_id": w2}),
        ("open a system wallet for fees", {"type": "system_wallet.open", "asset_id": "usd", "wallet_id": fees, "name": "Fees"}),
        ("issue 5 to W1, 7 to W2", {"type": "transaction.run", "operations": [
            {"type": "Issue", "wallet_id": w1, "amount": "5"}, {"type": "Issue", "wallet_id": w2, "amount": "7"}]}),
        ("seed example: transfer 11 W1->W2, then issue 6 W1", {"type": "transaction.run", "operations": [
            {"type": "Transfer", "from_wallet_id": w1, "to_wallet_id": w2, "amount": "11"},
            {"type": "Issue", "wallet_id": w1, "amount": "6"}]}),
        ("fixed order: issue 6 W1, then transfer 11 W1->W2", {"type": "transaction.run", "reference_id": f"fixed-{run}", "operations": [
            {"type": "Issue", "wallet_id": w1, "amount": "6"},
            {"type": "Transfer", "from_wallet_id": w1, "to_wallet_id": w2, "amount": "11"}]}),
        ("retry of the same reference ID", {"type": "transaction.run", "reference_id": f"fixed-{run}", "operations": [
            {"type": "Issue", "wallet_id": w1, "amount": "6"},
            {"type": "Transfer", "from_wallet_id": w1, "to_wallet_id": w2, "amount": "11"}]}),
        ("W2 pays a 0.25 fee", {"type": "transaction.run", "reference_id": f"fee-{run}", "operations": [
            {"type": "Transfer", "from_wallet_id": w2, "to_wallet_id": fees, "amount": "0.25"}]}),
        # Transaction IDs are derived from (project, reference ID): a client can name one it made.
        ("refund it: reverse that transaction", {"type": "transaction.reverse", "transaction_id": fee_transaction}),
        ("reverse it again", {"type": "transaction.reverse", "transaction_id": fee_transaction}),
        ("W2 pays the 0.25 fee once more", {"type": "transaction.run", "operations": [
            {"type": "Transfer", "from_wallet_id": w2, "to_wallet_id": fees, "amount": "0.25"}]}),
        ("hold 3 of W2 for a booking (toward the fee wallet)", {"type": "hold.create", "hold_id": f"booking-{run}", "wallet_id": w2,
            "to_wallet_id": fees, "amount": "3"}),
        ("W2 transfers 15 while 3 of it is held", {"type": "transaction.run", "operations": [
            {"type": "Transfer", "from_wallet_id": w2, "to_wallet_id": w1, "amount": "15"}]}),
        ("capture 2.50 of the booking (the rest is released)", {"type": "hold.capture", "hold_id": f"booking-{run}", "amount": "2.50"}),
        ("capture the booking again", {"type": "hold.capture", "hold_id": f"booking-{run}"}),
        ("hold 1 of W2 for 6 seconds", {"type": "hold.create", "hold_id": f"short-{run}", "wallet_id": w2, "amount": "1",
            "expires_at": EXPIRES_SOON}),
        ("(waiting until after its expiry)", None),
        ("capture that hold after its expiry", {"type": "hold.capture", "hold_id": f"short-{run}"}),
        ("amount with too many decimals", {"type": "transaction.run", "operations": [
            {"type": "Issue", "wallet_id": w1, "amount": "0.001"}]}),
        ("suspend customer 42 (suspends W2)", {"type": "customer.suspend", "customer_id": "42"}),
        ("transfer from suspended W2", {"type": "transaction.run", "operations": [
            {"type": "Transfer", "from_wallet_id": w2, "to_wallet_id": w1, "amount": "1"}]}),
        ("close W1 (empty)", {"type": "wallet.set_status", "wallet_id": w1, "status": "Closed"}),
        ("close W2 (not empty)", {"type": "wallet.set_status", "wallet_id": w2, "status": "Closed"}),
        ("redeem 0.25 from the fee wallet", {"type": "transaction.run", "operations": [
            {"type": "Redeem", "wallet_id": fees, "amount": "0.25"}]}),
    ]
    async with WalletClient(
        kafka=settings.kafka, signing_key=signing_key, requests_topic=settings.requests_topic, results_topic=settings.results_topic
    ) as client:
        print(f"\nSample traffic for project {project} (requests -> {settings.requests_topic}, results <- {settings.results_topic}):")
        for index, (step, body) in enumerate(steps):
            if body is None:
                print(f"  {step}", flush=True)
                await asyncio.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 0.5)
                continue
            if body.get("expires_at") is EXPIRES_SOON:
                expiry = datetime.now(UTC) + timedelta(seconds=6)
                body = {**body, "expires_at": expiry.isoformat()}
            request = {"reference_id": f"{run}-{index}", **body}
            if request["type"] != "project.create":
                request["project_id"] = project
            result = await client.submit(request, timeout=30)
            print(_line(step, result), flush=True)
    return 0


def main() -> int:
    settings = load_or_exit(ProcessorSettings, program="demo")
    log_path = Path(os.environ.get("CLOUDWALLET_DEMO_LOG", "demo-processor.log"))
    # As the operator: migrate, create the topics, grant the processor's principal its ACLs; the
    # processor itself runs with its own login (CLOUDWALLET_PROCESSOR_ENV_FILE, set by make demo).
    upgrade_to_head(database_url=settings.database_url)
    asyncio.run(ensure_topics(settings=settings))
    asyncio.run(grant_topics(operator=settings.kafka, settings=settings))
    print(f"starting the processor (cloudwallet run; log: {log_path})")
    with log_path.open("w") as log:
        processor = subprocess.Popen(
            [sys.executable, "-m", "processor.cli", "run", "--no-migrate"], env=processor_environment(settings), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while "started" not in log_path.read_text() and time.monotonic() < deadline:
            if processor.poll() is not None:
                print(f"the processor exited with code {processor.returncode}; see {log_path}", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return asyncio.run(traffic(settings, signing_key=tool_signing_key(settings, database_url=settings.database_url, label="demo")))
    finally:
        processor.send_signal(signal.SIGTERM)
        try:
            processor.wait(timeout=30)
        except subprocess.TimeoutExpired:
            processor.kill()
        print("processor stopped")


if __name__ == "__main__":
    sys.exit(main())
