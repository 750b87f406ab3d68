"""End-to-end fixtures: real processor processes (`cloudwallet run`) on the real stack.

Each test gets its own topics and consumer group; processes are started as children so a test
can SIGKILL them at will.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Roles  # tests/conftest.py

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import sqlalchemy as sa

from processor.client import WalletClient
from processor.client.connection import KafkaConnection
from processor.settings import ProcessorSettings
from schemas.signing import SigningKey
from processor.stream import acls
from processor.stream.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]


@dataclass(kw_only=True)
class Topology:
    """The settings of one test's processors: own topics, own consumer group, and the ACLs of
    processor/stream/acls.py for them, so every end-to-end test runs on exactly those grants."""

    kafka: KafkaConnection  # the operator's: inspects any topic
    roles: Roles
    database_url: str  # the owner's: tests read anything
    requests_topic: str
    results_topic: str
    dlq_topic: str
    consumer_group: str
    partitions: int
    signing_master: Path  # the processor checks signatures with it
    signing_key: SigningKey  # an operator key: the tests' clients sign with it

    @property
    def client_kafka(self) -> KafkaConnection:
        return self.roles.kafka["client"]

    def env(self, *, role: str = "processor") -> dict[str, str]:
        return self.settings(role=role).environment()

    def client_env(self) -> dict[str, str]:
        """A client's environment (CLI send, tail, ingest): its Kafka login, the topics, and the
        topology's signing key; no database, no master secret."""
        return {
            **self.client_kafka.environment(),
            "CLOUDWALLET_REQUESTS_TOPIC": self.requests_topic,
            "CLOUDWALLET_RESULTS_TOPIC": self.results_topic,
            "CLOUDWALLET_SIGNING_KEY": self.signing_key.token(),
        }

    def acl_table(self) -> list[acls.AclBinding]:
        names = {role: f"User:{self.roles.kafka[role].username}" for role in ("processor", "gateway", "client")}
        return acls.bindings(
            requests_topic=self.requests_topic,
            results_topic=self.results_topic,
            dlq_topic=self.dlq_topic,
            consumer_group=self.consumer_group,
            principals=acls.Principals(processor=names["processor"], writers=(names["gateway"], names["client"])),
        )

    async def allow_processor_group(self, group: str) -> None:
        """Another consumer group for this topology's processor (ACLs are per group)."""
        if self.roles.enforces_acls:
            principal = f"User:{self.roles.kafka['processor'].username}"
            await acls.apply(kafka=self.kafka, table=[acls.AclBinding(principal=principal, resource=acls.Resource.GROUP, name=group, operation=acls.Operation.READ)])

    def settings(self, *, role: str = "processor", kafka: KafkaConnection | None = None) -> ProcessorSettings:
        """The settings of `role` (processor or gateway): its Kafka login (or `kafka`) and its
        database role."""
        processor = kafka or self.roles.kafka[role]
        return ProcessorSettings(
            database_url=self.roles.database_url[role],
            bootstrap_servers=processor.bootstrap_servers,
            kafka_security_protocol=processor.security_protocol,
            kafka_sasl_mechanism=processor.sasl_mechanism,
            kafka_username=processor.username,
            kafka_password=processor.password,
            kafka_ca_file=processor.ca_file,
            signing_master_key_file=self.signing_master,
            requests_topic=self.requests_topic,
            results_topic=self.results_topic,
            dlq_topic=self.dlq_topic,
            consumer_group=self.consumer_group,
            requests_partitions=self.partitions,
            results_partitions=self.partitions,
        )


class ProcessorProcess:
    """One `cloudwallet run` child process."""

    def __init__(self, *, topology: Topology, log_dir: Path, name: str, extra_env: dict[str, str] | None = None) -> None:
        self.log_path = log_dir / f"processor-{name}.log"
        env = {key: value for key, value in os.environ.items() if not key.startswith("CLOUDWALLET_FAILPOINT")}
        env.update(topology.env())
        env.update(extra_env or {})
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "processor.cli", "run", "--no-migrate"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_started(self, timeout: float = 60) -> "ProcessorProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "started successfully" in self.log():
                return self
            if self.process.poll() is not None:
                raise AssertionError(f"processor exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"processor did not start within {timeout}s:\n{self.log()[-3000:]}")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout: float = 45) -> int:
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def wait_dead(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)


async def open_topology(
    *, kafka: KafkaConnection, roles: Roles, database_url: str, prefix: str, signing_master: Path, signing_key: SigningKey, partitions: int = 4
) -> Topology:
    """Topics named `<prefix>.requests|results|dlq`, created by the operator, with the ACLs."""
    found = Topology(
        kafka=kafka,
        roles=roles,
        database_url=database_url,
        requests_topic=f"{prefix}.requests",
        results_topic=f"{prefix}.results",
        dlq_topic=f"{prefix}.dlq",
        consumer_group=f"{prefix}.processor",
        partitions=partitions,
        signing_master=signing_master,
        signing_key=signing_key,
    )
    await ensure_topics(settings=found.settings(kafka=kafka))
    if roles.enforces_acls:
        await acls.apply(kafka=kafka, table=found.acl_table())
    return found


async def close_topology(topology: Topology) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    if topology.roles.enforces_acls:
        await acls.remove(kafka=topology.kafka, table=topology.acl_table())
    admin = AIOKafkaAdminClient(**topology.kafka.options())
    await admin.start()
    try:
        await admin.delete_topics([topology.requests_topic, topology.results_topic, topology.dlq_topic])
    except Exception:  # noqa: BLE001 - cleanup only
        pass
    finally:
        await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def topology(
    kafka: KafkaConnection, roles: Roles, database_url: str, run_id: str, signing_master: Path, operator_signing_key: SigningKey
) -> AsyncIterator[Topology]:
    prefix = f"test.{run_id}.{uuid.uuid4().hex[:8]}"
    found = await open_topology(
        kafka=kafka, roles=roles, database_url=database_url, prefix=prefix, signing_master=signing_master, signing_key=operator_signing_key
    )
    yield found
    await close_topology(found)


@pytest.fixture
def processors(topology: Topology, tmp_path: Path) -> Iterator:
    """Factory: start processor processes; every one still alive is stopped at the end."""
    started: list[ProcessorProcess] = []

    def start(name: str = "a", *, extra_env: dict[str, str] | None = None, wait: bool = True) -> ProcessorProcess:
        process = ProcessorProcess(topology=topology, log_dir=tmp_path, name=f"{name}-{len(started)}", extra_env=extra_env)
        started.append(process)
        return process.wait_started() if wait else process

    yield start
    for process in started:
        if process.alive:
            process.kill()
        # Shown by pytest only when the test failed.
        print(f"--- {process.log_path.name} (last lines) ---\n" + "\n".join(process.log().splitlines()[-40:]))


@pytest_asyncio.fixture(loop_scope="session")
async def client(topology: Topology) -> AsyncIterator[WalletClient]:
    async with WalletClient(
        kafka=topology.client_kafka, signing_key=topology.signing_key, requests_topic=topology.requests_topic, results_topic=topology.results_topic
    ) as wallet_client:
        yield wallet_client


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()
