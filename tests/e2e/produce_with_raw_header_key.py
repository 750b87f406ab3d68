"""Publish records whose header key is not UTF-8, as a C client can (run as a script).

aiokafka's producer encodes header keys as UTF-8 text, so this process uses its pure-Python
record builder (AIOKAFKA_NO_EXTENSIONS=1, set by the caller) with a key object that encodes
to raw bytes. Usage: python produce_with_raw_header_key.py TOPIC PARTITION VALUE_FILE (the Kafka login from the environment)
(VALUE_FILE: one JSON request per line); prints the offsets, one per line.
"""

from __future__ import annotations

import asyncio
import sys

from aiokafka import AIOKafkaProducer

from processor.settings import KafkaSettings, SigningSettings, load


class ClientSettings(KafkaSettings, SigningSettings):
    """A client's: its Kafka login and its signing key."""


class RawHeaderKey(str):
    def encode(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
        return b"\xff\xfe"


async def main(topic: str, partition: int, values: list[bytes]) -> None:
    settings = load(ClientSettings)  # the Kafka login and the signing key from the environment
    assert isinstance(settings, ClientSettings)
    signing = settings.client_signing_key
    producer = AIOKafkaProducer(**settings.kafka.options(), linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=b"k", partition=partition, headers=[(RawHeaderKey("zz"), b"v"), ("ok", b"1"), *(signing.headers(value) if signing else [])])
            for value in values
        ]
        for metadata in await asyncio.gather(*futures):
            print(metadata.offset)
    finally:
        await producer.stop()


if __name__ == "__main__":
    topic, partition, path = sys.argv[1:4]
    with open(path, "rb") as lines:
        asyncio.run(main(topic, int(partition), [line.rstrip(b"\n") for line in lines if line.strip()]))
