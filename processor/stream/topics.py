"""The app's topics, created with explicit partition counts (the broker never auto-creates)."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from processor.settings import ProcessorSettings

DLQ_OVERHEAD_BYTES = 256 * 1024  # a dead letter's key, headers and batch framing, at most
TOPIC_ALREADY_EXISTS = 36  # Kafka's error code: another instance created it first


class TopicsNotCreated(RuntimeError):
    """The broker refused to create a topic (most often: no CREATE ACL)."""

log = logging.getLogger(__name__)


async def ensure_topics(*, settings: ProcessorSettings) -> None:
    wanted = [
        # LogAppendTime: the broker stamps each request when it appends it, and that time decides
        # hold expiry, the same on every replay; a producer's CreateTime would be its to forge.
        NewTopic(
            settings.requests_topic,
            num_partitions=settings.requests_partitions,
            replication_factor=settings.topic_replication_factor,
            topic_configs={"message.timestamp.type": "LogAppendTime"},
        ),
        # Compacted: the topic keeps the latest result per project/reference ID key.
        NewTopic(
            settings.results_topic,
            num_partitions=settings.results_partitions,
            replication_factor=settings.topic_replication_factor,
            topic_configs={"cleanup.policy": "compact"},
        ),
        # Room for a dead letter of the largest record the processor reads, with its key and
        # headers (processor/stream/outbox.py bounds each), whatever the broker's default.
        NewTopic(
            settings.dlq_topic,
            num_partitions=1,
            replication_factor=settings.topic_replication_factor,
            topic_configs={"max.message.bytes": str(settings.max_request_bytes + DLQ_OVERHEAD_BYTES)},
        ),
    ]
    admin = AIOKafkaAdminClient(**settings.kafka.options(), client_id="cloudwallet-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in wanted if topic.name not in existing]
        if missing:
            response = await admin.create_topics(missing)  # errors come back as codes, not raised
            refused = [(name, code, message) for name, code, message, *_ in response.topic_errors if code not in (0, TOPIC_ALREADY_EXISTS)]
            if refused:
                raise TopicsNotCreated(
                    "the broker refused to create " + "; ".join(f"{name} (error {code}: {message})" for name, code, message in refused)
                    + ": create them as the operator, or grant this principal CREATE on them (cloudwallet kafka-acls)"
                )
            log.info("created topics %s", [t.name for t in missing])
    finally:
        await admin.close()
