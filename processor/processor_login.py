"""The processor's own login, for the tools that start a processor as the operator (the demo,
the benchmark, the fuzzer).

Those tools run as the operator: they create topics and databases and read the DLQ. The processor
they start must not: it connects as its own Kafka principal and its own non-owner database role
(the owner is held to row-level security and cannot run it). `CLOUDWALLET_PROCESSOR_ENV_FILE`
names a file of `export NAME=VALUE` lines with that login (what `stack.py env --as processor`
prints; `make demo|bench|fuzz` set it). Without it, the child gets the tool's own login.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import make_url

from processor.client.connection import KafkaConnection
from processor.settings import ProcessorSettings
from processor.stream import acls

ENV_FILE = "CLOUDWALLET_PROCESSOR_ENV_FILE"
LOGIN_NAMES = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")


def processor_login(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The login variables of the file named by CLOUDWALLET_PROCESSOR_ENV_FILE ({} when unset)."""
    path = environ.get(ENV_FILE)
    if not path:
        return {}
    login: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        words = shlex.split(line.removeprefix("export ")) if line.startswith("export ") else []
        if words and "=" in words[0]:
            name, value = words[0].split("=", 1)
            if name in LOGIN_NAMES or name.startswith("CLOUDWALLET_KAFKA_"):
                login[name] = value
    return login


def processor_environment(settings: ProcessorSettings, *, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment of a `cloudwallet run` child for `settings` (its topics, group and
    database), logged in as the processor when a login file is given. Other CLOUDWALLET_*
    settings pass through (e.g. CLOUDWALLET_BATCH_MAX_RECORDS); a failpoint never does."""
    env = {key: value for key, value in environ.items() if not key.startswith("CLOUDWALLET_FAILPOINT")}
    env.update(settings.environment())
    login = processor_login(environ)
    if login:
        for name in [name for name in env if name.startswith(("CLOUDWALLET_KAFKA_", "CLOUDWALLET_SIGNING_KEY"))]:
            del env[name]  # the operator's password and signing key must not reach the child
        env.update(login)
        env["DATABASE_URL"] = processor_database_url(settings.database_url, environ=environ)
    return env


def processor_database_url(database_url: str, *, environ: Mapping[str, str] = os.environ) -> str:
    """`database_url`'s database as the processor's role reaches it (itself without a login)."""
    login = processor_login(environ).get("DATABASE_URL")
    if not login:
        return database_url
    return make_url(login).set(database=make_url(database_url).database).render_as_string(hide_password=False)


async def grant_topics(*, operator: KafkaConnection, settings: ProcessorSettings, environ: Mapping[str, str] = os.environ) -> None:
    """The ACLs the processor's principal needs on `settings`' topics and group (as the operator;
    nothing to do when the child runs with the operator's own login)."""
    username = processor_login(environ).get("CLOUDWALLET_KAFKA_USERNAME")
    if not username or username == operator.username:
        return
    table = acls.bindings(
        requests_topic=settings.requests_topic,
        results_topic=settings.results_topic,
        dlq_topic=settings.dlq_topic,
        consumer_group=settings.consumer_group,
        principals=acls.Principals(processor=f"User:{username}", writers=()),
    )
    await acls.apply(kafka=operator, table=table)
