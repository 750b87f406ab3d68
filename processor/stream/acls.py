"""The Kafka ACLs each principal of ours needs, and nothing more; applied by the operator.

    cloudwallet kafka-acls [--apply]        (as a principal allowed to ALTER the cluster)

| principal | may | on |
|---|---|---|
| processor | READ          | the requests topic; its consumer group (join, fetch and commit offsets) |
| processor | WRITE, CREATE | the results topic, the DLQ, and reply topics named `<results>.reply.*` |
| processor | CREATE        | the requests topic (it creates missing topics at start) |
| processor | WRITE         | the requests topic: the hold.expire records of its sweep (processor/stream/hold_sweep.py) |
| gateway, client | WRITE   | the requests topic |
| gateway, client | READ    | the results topic (read without a consumer group) |

No one else may commit the processor's group or write results or dead letters: the broker runs
with `allow.everyone.if.no.acl.found=false`, so what is not in this table is refused.
(WRITE implies IDEMPOTENT_WRITE since Kafka 2.8, and READ/WRITE imply DESCRIBE.)

aiokafka's admin client has the CreateAcls request but no method for it; `apply` sends it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest

from processor.client.connection import KafkaConnection


class Resource(IntEnum):  # Kafka's ResourceType codes
    TOPIC = 2
    GROUP = 3


class Pattern(IntEnum):  # Kafka's PatternType codes
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):  # Kafka's AclOperation codes
    READ = 3
    WRITE = 4
    CREATE = 5


ALLOW = 3


@dataclass(frozen=True, kw_only=True)
class AclBinding:
    principal: str  # "User:<name>"
    resource: Resource
    name: str
    operation: Operation
    pattern: Pattern = Pattern.LITERAL

    def __str__(self) -> str:
        prefixed = "*" if self.pattern is Pattern.PREFIXED else ""
        return f"{self.principal:<22} {self.operation.name:<8} {self.resource.name.lower()} {self.name}{prefixed}"


@dataclass(frozen=True, kw_only=True)
class Principals:
    processor: str = "User:processor"
    writers: tuple[str, ...] = ("User:gateway", "User:client")


def reply_prefix(results_topic: str) -> str:
    """Reply topics (`reply_to`) the processor may write: named `<results topic>.reply.<...>`."""
    return f"{results_topic}.reply."


def bindings(*, requests_topic: str, results_topic: str, dlq_topic: str, consumer_group: str, principals: Principals) -> list[AclBinding]:
    """The ACL table above, for these names."""
    processor = principals.processor
    topic = Resource.TOPIC
    table = [
        AclBinding(principal=processor, resource=topic, name=requests_topic, operation=Operation.READ),
        AclBinding(principal=processor, resource=topic, name=requests_topic, operation=Operation.CREATE),
        AclBinding(principal=processor, resource=topic, name=requests_topic, operation=Operation.WRITE),
        AclBinding(principal=processor, resource=Resource.GROUP, name=consumer_group, operation=Operation.READ),
    ]
    for name in (results_topic, dlq_topic):
        table += [AclBinding(principal=processor, resource=topic, name=name, operation=op) for op in (Operation.WRITE, Operation.CREATE)]
    table.append(AclBinding(principal=processor, resource=topic, name=reply_prefix(results_topic), operation=Operation.WRITE, pattern=Pattern.PREFIXED))
    for writer in principals.writers:
        table.append(AclBinding(principal=writer, resource=topic, name=requests_topic, operation=Operation.WRITE))
        table.append(AclBinding(principal=writer, resource=topic, name=results_topic, operation=Operation.READ))
    return table


class AclRefused(RuntimeError):
    """The broker refused to create an ACL (the message says which and why)."""


class NoAuthorizer(AclRefused):
    """The broker runs without an authorizer (a plain broker): there are no ACLs to apply."""


SECURITY_DISABLED = 54  # Kafka's error code: no authorizer configured


async def apply(*, kafka: KafkaConnection, table: Iterable[AclBinding]) -> int:
    """Create every binding (creating one that exists changes nothing); returns how many."""
    return await _send_each(kafka=kafka, table=table, request=CreateAclsRequest, results="creation_responses")


async def remove(*, kafka: KafkaConnection, table: Iterable[AclBinding]) -> int:
    """Delete every binding (one that is not there is no error); returns how many were asked."""
    return await _send_each(kafka=kafka, table=table, request=DeleteAclsRequest, results="filter_responses")


async def _send_each(*, kafka: KafkaConnection, table: Iterable[AclBinding], request: type, results: str) -> int:
    admin = AIOKafkaAdminClient(**kafka.options(), client_id="cloudwallet-acls")
    await admin.start()
    try:
        count = 0
        for binding in table:
            sent = request(binding.resource, binding.name, binding.pattern, binding.principal, "*", binding.operation, ALLOW)
            response = await admin._send_request(sent)
            for error_code, error_message, *_ in getattr(response, results):
                if error_code == SECURITY_DISABLED:
                    raise NoAuthorizer("the broker has no authorizer (a plain broker): there are no ACLs to apply")
                if error_code != 0:
                    raise AclRefused(f"the broker refused {request.__name__} for {binding}: error {error_code} {error_message or ''}".strip())
            count += 1
        return count
    finally:
        await admin.close()


def table_text(table: Sequence[AclBinding]) -> str:
    return "\n".join(str(binding) for binding in table)
