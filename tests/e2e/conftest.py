"""End-to-end fixtures: real processor processes (`cloudwallet run`) on the real stack.

Each test gets its own topics and consumer group; processes are started as children so a test
can SIGKILL them at will.
"""

from __future__ import annotations

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
from processor.settings import ProcessorSettings
from processor.stream.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]


@dataclass(kw_only=True)
class Topology:
    """The settings of one test's processors: own topics, own consumer group."""

    bootstrap_servers: str
    database_url: str
    requests_topic: str
    results_topic: str
    dlq_topic: str
    consumer_group: str
    partitions: int

    def env(self) -> dict[str, str]:
        return self.settings().environment()

    def settings(self) -> ProcessorSettings:
        return ProcessorSettings(
            database_url=self.database_url,
            bootstrap_servers=self.bootstrap_servers,
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


@pytest_asyncio.fixture(loop_scope="session")
async def topology(bootstrap_servers: str, database_url: str, run_id: str) -> AsyncIterator[Topology]:
    suffix = uuid.uuid4().hex[:8]
    found = Topology(
        bootstrap_servers=bootstrap_servers,
        database_url=database_url,
        requests_topic=f"test.{run_id}.{suffix}.requests",
        results_topic=f"test.{run_id}.{suffix}.results",
        dlq_topic=f"test.{run_id}.{suffix}.dlq",
        consumer_group=f"test.{run_id}.{suffix}.processor",
        partitions=4,
    )
    await ensure_topics(settings=found.settings())
    yield found
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics([found.requests_topic, found.results_topic, found.dlq_topic])
    except Exception:  # noqa: BLE001 - cleanup only
        pass
    finally:
        await admin.close()


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
        bootstrap_servers=topology.bootstrap_servers, requests_topic=topology.requests_topic, results_topic=topology.results_topic
    ) as wallet_client:
        yield wallet_client


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()
