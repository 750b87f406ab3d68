"""Helpers for the gateway's end-to-end tests: a real `cloudwallet gateway` process on a free
127.0.0.1 port, next to real `cloudwallet run` processors, on the real Kafka and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Roles  # tests/conftest.py

import asyncio
import concurrent.futures
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from processor.gateway.api_keys import create_key

from processor.client.connection import KafkaConnection
from schemas.signing import SigningKey

from .conftest import ROOT, ProcessorProcess, Topology, close_topology, open_topology


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    """One `cloudwallet gateway` child process."""

    def __init__(self, *, topology: Topology, log_dir: Path, name: str = "gateway", extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        env = {key: value for key, value in os.environ.items() if not key.startswith("CLOUDWALLET_")}
        env.update(topology.env(role="gateway"))
        env["CLOUDWALLET_SIGNING_KEY"] = topology.signing_key.token()  # the gateway signs as an operator
        env.setdefault("CLOUDWALLET_RESULT_WAIT_SECONDS", "20")
        env.update(extra_env or {})
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "processor.cli",
                    "gateway",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--no-migrate",
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> "GatewayProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gateway exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway did not answer within {timeout}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def run_async(coroutine: Any) -> Any:
    """Run a coroutine on its own loop in a worker thread (never disturbs the session's loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def new_topology(
    *, kafka: KafkaConnection, roles: Roles, database_url: str, run_id: str, signing_master: Path, signing_key: SigningKey, partitions: int = 4
) -> Topology:
    prefix = f"test.{run_id}.gw{uuid.uuid4().hex[:8]}"
    return run_async(
        open_topology(
            kafka=kafka, roles=roles, database_url=database_url, prefix=prefix, signing_master=signing_master, signing_key=signing_key, partitions=partitions
        )
    )


def delete_topology(topology: Topology) -> None:
    run_async(close_topology(topology))


class Api:
    """An HTTP client of the gateway with one API key (or none)."""

    def __init__(self, base_url: str, key: str | None) -> None:
        headers = {"X-Api-Key": key} if key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=60)

    def __getattr__(self, name: str) -> Any:  # get, post, put, delete, request
        return getattr(self.http, name)

    def ok(self, method: str, url: str, expect: int | tuple[int, ...] = (200, 201), **kwargs: Any) -> Any:
        response = self.http.request(method, url, **kwargs)
        expected = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in expected, f"{method} {url}: {response.status_code} {response.text}"
        return response.json()


@dataclass
class GatewayStack:
    topology: Topology
    processor: ProcessorProcess
    gateway: GatewayProcess
    database_url: str
    operator_key: str

    @property
    def base_url(self) -> str:
        return self.gateway.base_url

    def key(self, kind: str, *, project: str | None = None, customer: str | None = None) -> str:
        engine = sa.create_engine(self.database_url)
        try:
            return create_key(engine, kind=kind, project_id=project, customer_id=customer, label="e2e").token
        finally:
            engine.dispose()

    def api(self, key: str | None = None) -> Api:
        return Api(self.base_url, key if key is not None else self.operator_key)


@pytest.fixture(scope="module")
def gateway_stack(
    kafka: KafkaConnection,
    roles: Roles,
    database_url: str,
    run_id: str,
    signing_master: Path,
    operator_signing_key: SigningKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayStack]:
    """One processor and one gateway on their own topics, shared by a test module."""
    with running_stack(
        kafka=kafka, roles=roles, database_url=database_url, run_id=run_id, signing_master=signing_master,
        signing_key=operator_signing_key, log_dir=tmp_path_factory.mktemp("gateway"), extra_env={},
    ) as stack:  # fmt: skip
        yield stack


@contextmanager
def running_stack(
    *, kafka: KafkaConnection, roles: Roles, database_url: str, run_id: str, signing_master: Path, signing_key: SigningKey, log_dir: Path,
    extra_env: dict[str, str],
) -> Iterator[GatewayStack]:  # fmt: skip
    """A processor and a gateway (both with `extra_env`) on topics of their own, and an operator
    API key; all of it stopped and deleted after."""
    topology = new_topology(kafka=kafka, roles=roles, database_url=database_url, run_id=run_id, signing_master=signing_master, signing_key=signing_key)
    processor = ProcessorProcess(topology=topology, log_dir=log_dir, name="gw", extra_env=extra_env).wait_started()
    gateway = GatewayProcess(topology=topology, log_dir=log_dir, extra_env={"CLOUDWALLET_API_KEY_CACHE_SECONDS": "0", **extra_env})
    try:
        gateway.wait_ready()
        engine = sa.create_engine(database_url)
        try:
            operator_key = create_key(engine, kind="operator", label="e2e operator").token
        finally:
            engine.dispose()
        yield GatewayStack(topology=topology, processor=processor, gateway=gateway, database_url=database_url, operator_key=operator_key)
    finally:
        gateway.stop()
        processor.stop()
        delete_topology(topology)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def setup_project(api: Api, project: str, *, asset: str = "usd", fractions: int = 100) -> None:
    api.ok("POST", "/projects", json={"project_id": project, "name": f"Project {project}"}, expect=201)
    api.ok("POST", f"/projects/{project}/assets", json={"asset_id": asset, "code": asset.upper(), "name": asset, "fractions": fractions}, expect=201)


def open_system_wallet(api: Api, project: str, wallet: str, *, asset: str = "usd") -> dict:
    return api.ok("POST", f"/projects/{project}/system-wallets", json={"asset_id": asset, "wallet_id": wallet}, expect=201)


def issue(api: Api, project: str, wallet: str, amount: str, *, reference: str | None = None) -> dict:
    return api.ok(
        "POST",
        f"/projects/{project}/transactions",
        json={"reference_id": reference or unique("fund-"), "operations": [{"type": "Issue", "wallet_id": wallet, "amount": amount}]},
        expect=201,
    )
