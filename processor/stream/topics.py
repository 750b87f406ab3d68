"""The app's topics, created with explicit partition counts (the broker never auto-creates)."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from processor.settings import ProcessorSettings

log = logging.getLogger(__name__)


async def ensure_topics(*, settings: ProcessorSettings) -> None:
    wanted = [
        NewTopic(settings.requests_topic, num_partitions=settings.requests_partitions, replication_factor=settings.topic_replication_factor),
        # Compacted: the topic keeps the latest result per project/reference ID key.
        NewTopic(
            settings.results_topic,
            num_partitions=settings.results_partitions,
            replication_factor=settings.topic_replication_factor,
            topic_configs={"cleanup.policy": "compact"},
        ),
        NewTopic(settings.dlq_topic, num_partitions=1, replication_factor=settings.topic_replication_factor),
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id="cloudwallet-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in wanted if topic.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another instance created it first
            log.info("created topics %s", [t.name for t in missing])
    finally:
        await admin.close()
