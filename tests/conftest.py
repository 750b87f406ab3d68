"""Real services for the tests: Apache Kafka and PostgreSQL, resolved in this order:

1. explicit `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` (each on its own);
2. testcontainers, when a Docker engine answers;
3. the local stack from `deploy/local/stack.py` (started here if it is not running).

Each test run gets its own database (created, migrated, dropped) and its own topic prefix.
Unit tests (tests/unit) need none of this and never trigger it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "deploy" / "local" / "stack.py"


@dataclass(kw_only=True)
class Services:
    bootstrap_servers: str
    admin_database_url: str
    source: str
    kafka_version: str
    cleanups: list = field(default_factory=list)


def _docker_engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def _from_local_stack() -> dict[str, str]:
    done = subprocess.run([sys.executable, str(STACK), "up"], capture_output=True, text=True)
    sys.stderr.write(done.stdout.replace("export ", "") if done.returncode == 0 else "")
    if done.returncode != 0:
        pytest.exit(f"the local stack did not come up:\n{done.stdout}{done.stderr}", returncode=3)
    values = dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines() if line.startswith("export "))
    status = subprocess.run([sys.executable, str(STACK), "status"], capture_output=True, text=True)
    import json

    values["KAFKA_VERSION"] = json.loads(status.stdout)["kafka"]["version"] or "unknown"
    return values


def resolve_services() -> Services:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    database = os.environ.get("DATABASE_URL")
    cleanups: list = []
    sources = []
    kafka_version = "external broker (version not reported over the wire)"
    if bootstrap and database:
        return Services(bootstrap_servers=bootstrap, admin_database_url=database, source="explicit settings", kafka_version=kafka_version)
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        if not bootstrap:
            kafka = KafkaContainer("apache/kafka:4.1.0").with_kraft()
            kafka.start()
            cleanups.append(kafka.stop)
            bootstrap, kafka_version = kafka.get_bootstrap_server(), "4.1.0 (container)"
        if not database:
            postgres = PostgresContainer("postgres:16", driver="psycopg")
            postgres.start()
            cleanups.append(postgres.stop)
            database = postgres.get_connection_url()
        sources.append("testcontainers")
    else:
        local = _from_local_stack()
        if not bootstrap:
            bootstrap, kafka_version = local["KAFKA_BOOTSTRAP_SERVERS"], local["KAFKA_VERSION"]
        database = database or local["DATABASE_URL"]
        sources.append("deploy/local stack")
    return Services(bootstrap_servers=bootstrap, admin_database_url=database, source=", ".join(sources), kafka_version=kafka_version, cleanups=cleanups)


SERVICE_REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    """Say which real services the run talked to, so the log proves it."""
    for line in SERVICE_REPORT:
        terminalreporter.write_line(f"[services] {line}")


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    found = resolve_services()
    SERVICE_REPORT.append(f"Apache Kafka {found.kafka_version} at {found.bootstrap_servers} ({found.source})")
    yield found
    for cleanup in found.cleanups:
        cleanup()


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def database_url(services: Services, run_id: str) -> Iterator[str]:
    """A fresh database for this test run, migrated to head, dropped afterwards."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    admin_url = make_url(services.admin_database_url)
    name = f"cw_test_{run_id}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        version = connection.execute(sa.text("SELECT version()")).scalar_one()
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    SERVICE_REPORT.append(f"PostgreSQL: {version} ({services.source}), test database {name}")
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    _migrate_if_available(url)
    yield url
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _migrate_if_available(url: str) -> None:
    try:
        from processor.storage.migrate import upgrade_to_head
    except ImportError:
        return
    upgrade_to_head(database_url=url)


@pytest.fixture(scope="session")
def bootstrap_servers(services: Services) -> str:
    return services.bootstrap_servers


@pytest_asyncio.fixture(loop_scope="session")
async def new_topic(bootstrap_servers: str, run_id: str) -> AsyncIterator:
    """Factory: create a topic unique to this run with an explicit partition count."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    created: list[str] = []

    async def create(name: str, *, partitions: int, config: dict[str, str] | None = None) -> str:
        topic = f"test.{run_id}.{name}.{uuid.uuid4().hex[:6]}"
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1, topic_configs=config or {})])
        created.append(topic)
        return topic

    yield create
    if created:
        await admin.delete_topics(created)
    await admin.close()
    await asyncio.sleep(0)
