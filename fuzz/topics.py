"""The fuzzer's own Kafka topics and what the broker says about them (admin calls only)."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from processor.client.connection import KafkaConnection

DEFAULT_MAX_MESSAGE_BYTES = 2_097_152  # the local stack's message.max.bytes


async def _admin(kafka: KafkaConnection) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**kafka.options(), client_id="cloudwallet-fuzz")
    await admin.start()
    return admin


async def create_topic(*, kafka: KafkaConnection, name: str, partitions: int) -> None:
    admin = await _admin(kafka)
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def delete_topics(*, kafka: KafkaConnection, names: Iterable[str]) -> None:
    admin = await _admin(kafka)
    try:
        await admin.delete_topics(list(names))
    except Exception:  # noqa: BLE001 - cleanup only
        pass
    finally:
        await admin.close()


async def existing(*, kafka: KafkaConnection, names: Iterable[str]) -> list[str]:
    """Those of `names` the broker has (a reply_to target may have been created meanwhile)."""
    admin = await _admin(kafka)
    try:
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    return sorted(set(names) & topics)


async def partition_count(*, kafka: KafkaConnection, topic: str) -> int:
    admin = await _admin(kafka)
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return len(described[0]["partitions"])


async def max_message_bytes(*, kafka: KafkaConnection, topic: str) -> int:
    """The largest record batch the broker takes on `topic` (its max.message.bytes)."""
    admin = await _admin(kafka)
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": None})])
    finally:
        await admin.close()
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == "max.message.bytes":
                    return int(entry[1])
    return DEFAULT_MAX_MESSAGE_BYTES
