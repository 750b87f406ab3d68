"""Real services for the tests: Apache Kafka and PostgreSQL, resolved in this order:

1. explicit `KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL` (both; the Kafka login from the
   `CLOUDWALLET_KAFKA_*` variables): one login then serves every role;
2. testcontainers, when a Docker engine answers (a plain broker);
3. the local stack from `deploy/local/stack.py` (started here if it is not running): SASL over
   TLS with ACLs, and each role (processor, gateway, client) logs in as itself.

Each test run gets its own database (created, migrated, dropped) and its own topic prefix.
Unit tests (tests/unit) need none of this and never trigger it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from processor.client.connection import KafkaConnection, read_secret_file
from schemas.signing import SigningKey

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "deploy" / "local" / "stack.py"


ROLES = ("processor", "gateway", "client")


@dataclass(kw_only=True)
class Services:
    kafka: KafkaConnection  # the operator's login (User:admin on the local stack): topics, ACLs, reading anything
    role_kafka: dict[str, KafkaConnection]  # the processor's, the gateway's and a client's own logins
    admin_database_url: str  # the owner role: creates, migrates and drops each run's database
    role_database_urls: dict[str, str]  # the processor's and the gateway's non-owner roles
    source: str
    kafka_version: str
    enforces_acls: bool  # True on the local stack: every role has only the ACLs it is granted
    processor_env_file: str | None = None  # CLOUDWALLET_PROCESSOR_ENV_FILE for the tools (bench, fuzz)
    cleanups: list = field(default_factory=list)


def _docker_engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def connection_from(env: dict[str, str]) -> KafkaConnection:
    """A KafkaConnection from the variables `stack.py env` prints (or the process's own)."""
    password_file = env.get("CLOUDWALLET_KAFKA_PASSWORD_FILE")
    password = env.get("CLOUDWALLET_KAFKA_PASSWORD")
    ca_file = env.get("CLOUDWALLET_KAFKA_CA_FILE")
    return KafkaConnection(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        security_protocol=env.get("CLOUDWALLET_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),  # type: ignore[arg-type]
        sasl_mechanism=env.get("CLOUDWALLET_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),  # type: ignore[arg-type]
        username=env.get("CLOUDWALLET_KAFKA_USERNAME"),
        password=read_secret_file(Path(password_file), setting="CLOUDWALLET_KAFKA_PASSWORD_FILE") if password_file else SecretStr(password) if password else None,
        ca_file=Path(ca_file) if ca_file else None,
    )


def _stack(*args: str) -> str:
    done = subprocess.run([sys.executable, str(STACK), *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.exit(f"the local stack failed ({' '.join(args)}):\n{done.stdout}{done.stderr}", returncode=3)
    return done.stdout


def stack_env(role: str) -> dict[str, str]:
    """`stack.py env --as ROLE`: what that role needs to connect (password files, not passwords)."""
    exports = (shlex.split(line.removeprefix("export "))[0] for line in _stack("env", "--as", role).splitlines() if line.startswith("export "))
    return dict(item.split("=", 1) for item in exports)


def _from_local_stack() -> Services:
    sys.stderr.write(_stack("up"))
    admin = stack_env("admin")
    kafka_version = json.loads(subprocess.run([sys.executable, str(STACK), "status"], capture_output=True, text=True).stdout)["kafka"]["version"]
    envs = {role: stack_env(role) for role in ROLES}
    return Services(
        kafka=connection_from(admin),
        role_kafka={role: connection_from(env) for role, env in envs.items()},
        admin_database_url=admin["DATABASE_URL"],
        role_database_urls={role: env["DATABASE_URL"] for role, env in envs.items() if "DATABASE_URL" in env},
        source="deploy/local stack (SASL_SSL, ACLs, scram-sha-256)",
        kafka_version=kafka_version or "unknown",
        enforces_acls=True,
        processor_env_file=_stack("env-file", "--as", "processor").strip(),
    )


def _shared(*, kafka: KafkaConnection, database_url: str, source: str, kafka_version: str, cleanups: list) -> Services:
    """Services given from outside: one login serves every role (ACLs are the operator's)."""
    return Services(
        kafka=kafka,
        role_kafka={role: kafka for role in ROLES},
        admin_database_url=database_url,
        role_database_urls={role: database_url for role in ("processor", "gateway")},
        source=source,
        kafka_version=kafka_version,
        enforces_acls=False,
        cleanups=cleanups,
    )


def resolve_services() -> Services:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    database = os.environ.get("DATABASE_URL")
    external = "external broker (version not reported over the wire)"
    if bootstrap and database:
        return _shared(kafka=connection_from(dict(os.environ)), database_url=database, source="explicit settings", kafka_version=external, cleanups=[])
    if not _docker_engine_answers():
        if bootstrap or database:
            pytest.exit("set both KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL, or neither (the local stack then provides both)", returncode=3)
        return _from_local_stack()
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    cleanups: list = []
    kafka = KafkaContainer("apache/kafka:4.1.0").with_kraft()
    kafka.start()
    cleanups.append(kafka.stop)
    postgres = PostgresContainer("postgres:16", driver="psycopg")
    postgres.start()
    cleanups.append(postgres.stop)
    plain = KafkaConnection(bootstrap_servers=kafka.get_bootstrap_server(), security_protocol="PLAINTEXT")
    return _shared(kafka=plain, database_url=postgres.get_connection_url(), source="testcontainers (plain broker)", kafka_version="4.1.0 (container)", cleanups=cleanups)


SERVICE_REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    """Say which real services the run talked to, so the log proves it."""
    for line in SERVICE_REPORT:
        terminalreporter.write_line(f"[services] {line}")


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    found = resolve_services()
    SERVICE_REPORT.append(f"Apache Kafka {found.kafka_version} at {found.kafka.bootstrap_servers} ({found.kafka.security_protocol}; {found.source})")
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
    _drop_database(admin, name)
    admin.dispose()


def _drop_database(admin: Any, name: str) -> None:
    """DROP ... WITH (FORCE) as the owner, which may not end another role's backend: one of the
    processor's or gateway's connections still closing makes it fail for a moment. Wait that out;
    a database still in use after that is left behind with a warning, not a failed run."""
    import sqlalchemy as sa

    last: Exception | None = None
    for _ in range(40):
        try:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except sa.exc.DBAPIError as error:
            last = error
            time.sleep(0.25)
    warnings.warn(f"test database {name} was left behind: {last}", stacklevel=1)


def _migrate_if_available(url: str) -> None:
    try:
        from processor.storage.migrate import upgrade_to_head
    except ImportError:
        return
    upgrade_to_head(database_url=url)


@pytest.fixture(scope="session")
def kafka(services: Services) -> KafkaConnection:
    """The operator's login: creates and deletes the tests' topics, reads any of them."""
    return services.kafka


@dataclass(frozen=True, kw_only=True)
class Roles:
    """Each role's own logins, for this run's database."""

    kafka: dict[str, KafkaConnection]
    database_url: dict[str, str]
    enforces_acls: bool


@pytest.fixture(scope="session")
def roles(services: Services, database_url: str) -> Roles:
    from sqlalchemy.engine import make_url

    name = make_url(database_url).database
    urls = {role: make_url(url).set(database=name).render_as_string(hide_password=False) for role, url in services.role_database_urls.items()}
    return Roles(kafka=services.role_kafka, database_url=urls, enforces_acls=services.enforces_acls)


@pytest.fixture(scope="session")
def signing_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This run's master signing secret (schemas/signing.py), in a file only we read."""
    import secrets as random_secrets

    path = tmp_path_factory.mktemp("signing") / "master.key"
    path.write_text(random_secrets.token_urlsafe(48) + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def operator_signing_key(database_url: str, signing_master: Path) -> SigningKey:
    """An operator signing key (any project) in this run's database: the tests' clients sign with it."""
    import sqlalchemy as sa

    from schemas.signing import read_master
    from processor.signing_keys import create_signing_key

    engine = sa.create_engine(database_url)
    try:
        return create_signing_key(engine, master=read_master(signing_master), project_id=None, label="tests")
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def processor_database_url(roles: Roles) -> str:
    """This run's database as the processor's role connects to it (non-owner, BYPASSRLS)."""
    return roles.database_url["processor"]


@pytest_asyncio.fixture(loop_scope="session")
async def new_topic(kafka: KafkaConnection, run_id: str) -> AsyncIterator:
    """Factory: create a topic unique to this run with an explicit partition count."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**kafka.options())
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
