"""Only those allowed: each refusal of issue 10, proved on the secured local stack.

Kafka: no login, a wrong password, a client writing results or dead letters, reading the DLQ,
committing the processor's group. The tenant wall: a request for project B signed with A's key,
unsigned, tampered or signed with a revoked key changes nothing and is answered Unauthorized.
PostgreSQL: the processor's role cannot rewrite history, drop the trigger or read API keys; the
gateway's role sees one project's rows and writes none. (The 48 MiB chunked body: test_gateway.py.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupAuthorizationFailedError, KafkaConnectionError, KafkaError, TopicAuthorizationFailedError
from pydantic import SecretStr

from processor.client import WalletClient
from processor.client.connection import KafkaConnection
from schemas.signing import SigningKey, read_master
from processor.signing_keys import create_signing_key, revoke_signing_key

from .support import project_setup, submit_all

pytestmark = pytest.mark.e2e

TOPIC_AUTHORIZATION_FAILED = 29  # Kafka's error code


@pytest.fixture
def secured(roles) -> None:
    if not roles.enforces_acls:
        pytest.skip("needs the local stack's SASL_SSL broker with ACLs (explicit settings or testcontainers give one login)")


async def _refused_start(kafka: KafkaConnection) -> BaseException:
    """Start a producer with `kafka`; return what refused it (fails the test when nothing did)."""
    producer = AIOKafkaProducer(**kafka.options(), request_timeout_ms=5000, metadata_max_age_ms=5000)
    try:
        await asyncio.wait_for(producer.start(), timeout=20)
    except (KafkaError, OSError, asyncio.TimeoutError) as error:
        return error
    finally:
        await producer.stop()
    pytest.fail(f"a producer with {kafka.security_protocol} / {kafka.username!r} was let in")


# ------------------------------------------------------------------------------------- Kafka


async def test_a_client_without_a_login_is_refused(secured, topology) -> None:
    plain = KafkaConnection(bootstrap_servers=topology.kafka.bootstrap_servers, security_protocol="PLAINTEXT")
    tls_only = KafkaConnection(bootstrap_servers=topology.kafka.bootstrap_servers, security_protocol="SSL", ca_file=topology.kafka.ca_file)
    for anonymous in (plain, tls_only):
        assert isinstance(await _refused_start(anonymous), (KafkaConnectionError, KafkaError, OSError, asyncio.TimeoutError))


async def test_a_wrong_password_is_refused(secured, topology) -> None:
    wrong = topology.client_kafka.as_user(username=topology.client_kafka.username, password=SecretStr("not-the-password"))
    error = await _refused_start(wrong)
    assert "uthenticat" in f"{type(error).__name__} {error}" or isinstance(error, KafkaConnectionError), error


async def _send_as(kafka: KafkaConnection, topic: str) -> None:
    producer = AIOKafkaProducer(**kafka.options(), request_timeout_ms=5000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=b"forged", value=b'{"status": "Completed"}')
    finally:
        await producer.stop()


@pytest.mark.parametrize("role", ["client", "gateway"])
async def test_a_client_principal_cannot_write_results_or_dead_letters(secured, topology, role) -> None:
    for topic in (topology.results_topic, topology.dlq_topic):
        with pytest.raises(TopicAuthorizationFailedError):
            await _send_as(topology.roles.kafka[role], topic)


async def test_a_client_principal_cannot_see_the_dlq_or_drop_topics(secured, topology) -> None:
    """Without DESCRIBE (implied by READ) the DLQ's metadata is refused: nothing to fetch from."""
    admin = AIOKafkaAdminClient(**topology.client_kafka.options(), request_timeout_ms=5000)
    await admin.start()
    try:
        described = {t["topic"]: t["error_code"] for t in await admin.describe_topics([topology.dlq_topic, topology.results_topic])}
        assert described == {topology.dlq_topic: TOPIC_AUTHORIZATION_FAILED, topology.results_topic: 0}, described
        deleted = await admin.delete_topics([topology.results_topic])
        assert [code for _name, code, *_ in deleted.topic_error_codes] == [TOPIC_AUTHORIZATION_FAILED]
    finally:
        await admin.close()


async def test_a_client_principal_cannot_commit_the_processors_group(secured, topology) -> None:
    intruder = AIOKafkaConsumer(**topology.client_kafka.options(), group_id=topology.consumer_group, enable_auto_commit=False)
    await intruder.start()
    try:
        tp = TopicPartition(topology.requests_topic, 0)
        intruder.assign([tp])
        with pytest.raises(GroupAuthorizationFailedError):
            await intruder.commit({tp: 1_000_000})
    finally:
        await intruder.stop()


# ----------------------------------------------------------------------------- tenant walls


def _balance(db: sa.Engine, project: str, wallet: str) -> int:
    with db.connect() as connection:
        return connection.execute(
            sa.text("SELECT balance FROM wallets WHERE project_id = :p AND wallet_id = :w"), {"p": project, "w": wallet}
        ).scalar_one()


def _spent(db: sa.Engine, project: str, reference: str) -> bool:
    with db.connect() as connection:
        return connection.execute(
            sa.text("SELECT count(*) FROM processed_requests WHERE project_id = :p AND reference_id = :r"), {"p": project, "r": reference}
        ).scalar_one() == 1


async def test_a_request_for_another_project_changes_nothing_and_is_unauthorized(processors, client, topology, db) -> None:
    processors("wall")
    a, b = f"tenant-a-{uuid.uuid4().hex[:6]}", f"tenant-b-{uuid.uuid4().hex[:6]}"
    await submit_all(client, project_setup(a, ["A"], fund="10") + project_setup(b, ["B"], fund="10"))
    master = read_master(topology.signing_master)
    key_a = create_signing_key(db, master=master, project_id=a, label="tenant a")
    revoked = create_signing_key(db, master=master, project_id=b, label="revoked")
    assert revoke_signing_key(db, revoked.key_id)
    mint = {"type": "transaction.run", "project_id": b, "operations": [{"type": "Issue", "wallet_id": "B", "amount": "1000000.00"}]}
    forged = SigningKey(key_id=key_a.key_id, secret=SecretStr("A" * 43))  # A's key ID, a guessed secret
    attempts = {"a-key-for-b": key_a, "unsigned": None, "revoked": revoked, "guessed-secret": forged}
    for name, key in attempts.items():
        async with WalletClient(kafka=topology.client_kafka, signing_key=key, requests_topic=topology.requests_topic, results_topic=topology.results_topic) as attacker:
            result = await attacker.submit({**mint, "reference_id": f"mint-{name}"}, timeout=30)
        assert (result.status.value, result.error.code.value) == ("Failed", "Unauthorized"), (name, result)
        assert not _spent(db, b, f"mint-{name}"), f"{name}: an Unauthorized request spent B's reference"
    assert _balance(db, b, "B") == 1000, "project B's balance moved"
    # A's key still acts in A, and the reference B's owner meant is free for B's own request.
    async with WalletClient(kafka=topology.client_kafka, signing_key=key_a, requests_topic=topology.requests_topic, results_topic=topology.results_topic) as tenant:
        own = await tenant.submit({"type": "transaction.run", "project_id": a, "reference_id": "own", "operations": [{"type": "Issue", "wallet_id": "A", "amount": "1"}]})
    assert own.status.value == "Completed", own
    honest = await client.submit({**mint, "reference_id": "mint-unsigned", "operations": [{"type": "Issue", "wallet_id": "B", "amount": "1"}]})
    assert honest.status.value == "Completed", honest


async def test_a_tampered_request_is_unauthorized(processors, topology, db) -> None:
    """Bytes changed after signing (an amount raised in flight) no longer match the signature."""
    from .test_every_record import answered, produce_at

    processors("tamper")
    project = f"tamper-{uuid.uuid4().hex[:6]}"
    async with WalletClient(kafka=topology.client_kafka, signing_key=topology.signing_key, requests_topic=topology.requests_topic, results_topic=topology.results_topic) as owner:
        await submit_all(owner, project_setup(project, ["A"], fund="10"))
    honest = f'{{"type":"transaction.run","project_id":"{project}","reference_id":"t1","operations":[{{"type":"Issue","wallet_id":"A","amount":"1"}}]}}'.encode()
    signed_headers = topology.signing_key.headers(honest)
    tampered = honest.replace(b'"amount":"1"', b'"amount":"9999"')
    sources = await produce_at(topology, [(b"k", tampered, signed_headers)], partition=0, sign=False)
    results, letters = await answered(topology, sources)
    answer = results[sources[0]]
    assert not letters and b'"Unauthorized"' in answer.value, answer.value
    assert _balance(db, project, "A") == 1000


# ------------------------------------------------------------------------------- PostgreSQL


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE wallet_entries SET amount = amount + 1",
        "DELETE FROM wallet_entries",
        "DROP TRIGGER wallet_entries_append_only ON wallet_entries",
        "ALTER TABLE wallet_entries DISABLE TRIGGER ALL",
        "UPDATE transactions SET status = 'Completed'",
        "DELETE FROM processed_requests",
        "UPDATE record_answers SET result = '{}'",
        "SELECT count(*) FROM api_keys",
        "INSERT INTO api_keys (key_id, key_hash, kind, created_at) VALUES ('x', 'x', 'operator', now())",
        "INSERT INTO signing_keys (key_id, secret_sha256, created_at) VALUES ('0000000000000000', '\\x00', now())",
        "CREATE TABLE intruder (id int)",
    ],
)
def test_the_processors_role_cannot_rewrite_history_or_read_api_keys(roles, statement: str) -> None:
    if not roles.enforces_acls:
        pytest.skip("one database role serves every role outside the local stack")
    engine = sa.create_engine(roles.database_url["processor"])
    try:
        with pytest.raises(sa.exc.ProgrammingError) as refused:
            with engine.begin() as connection:
                connection.execute(sa.text(statement))
        assert "permission denied" in str(refused.value) or "must be owner" in str(refused.value), refused.value
    finally:
        engine.dispose()


async def test_the_gateways_role_sees_one_projects_rows_and_writes_none(roles, client, processors) -> None:
    if not roles.enforces_acls:
        pytest.skip("one database role serves every role outside the local stack")
    processors("rls")
    a, b = f"rls-a-{uuid.uuid4().hex[:6]}", f"rls-b-{uuid.uuid4().hex[:6]}"
    await submit_all(client, project_setup(a, ["A"], fund="5") + project_setup(b, ["B"], fund="5"))
    engine = sa.create_engine(roles.database_url["gateway"])
    visible = "SELECT DISTINCT project_id FROM {table} WHERE project_id IN (:a, :b)"
    try:
        for table in ("projects", "assets", "wallets", "transactions", "wallet_entries", "processed_requests"):
            with engine.connect() as connection:
                assert connection.execute(sa.text(visible.format(table=table)), {"a": a, "b": b}).scalars().all() == [], f"{table}: rows without a project set"
                connection.execute(sa.select(sa.func.set_config("cloudwallet.project_id", a, True)))
                seen = connection.execute(sa.text(visible.format(table=table)), {"a": a, "b": b}).scalars().all()
            assert seen == [a], f"{table}: the gateway's role with project {a} set saw {seen}"
        for statement in ("UPDATE wallets SET balance = 0", "INSERT INTO projects (project_id, name, created_at) VALUES ('x', 'x', now())", "DELETE FROM api_keys"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                with engine.begin() as connection:
                    connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def test_a_role_env_carries_no_password(roles) -> None:
    """The settings each role gets name files, never a password (settings end up in logs)."""
    if not roles.enforces_acls:
        pytest.skip("outside the local stack the settings are the caller's")
    for role, kafka in roles.kafka.items():
        assert kafka.password is not None and kafka.password.get_secret_value() not in repr(dataclasses.asdict(kafka)), role
    for role, url in roles.database_url.items():
        assert sa.engine.make_url(url).password is None, f"{role}'s DATABASE_URL holds a password"
