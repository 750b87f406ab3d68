"""The raw-Kafka limit: consume the request records and produce one result each, no processing.

`python -m bench.passthrough` with the same consumer and producer settings as the processor
(batches of `--max-records`, acks=all, idempotence): per batch it reads each record's
project and reference ID (json.loads, the least any consumer must do), publishes a result of
`--result-bytes` keyed `"{project_id}/{reference_id}"`, waits for the broker, then commits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.results import result_key
from processor.settings import KafkaSettings, load


async def main(args: argparse.Namespace) -> None:
    kafka = load(KafkaSettings).kafka  # the login from the environment, as the processor's
    consumer = AIOKafkaConsumer(
        args.requests,
        **kafka.options(),
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=args.max_records,
        fetch_max_wait_ms=args.linger_ms,
    )
    producer = AIOKafkaProducer(
        **kafka.options(),
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=args.max_batch_size,
        compression_type=args.compression or None,
    )
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("passthrough started successfully", flush=True)
    padding = "x" * max(0, args.result_bytes - 200)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=args.max_records)
            if not batches:
                continue
            pending = []
            for records in batches.values():
                for record in records:
                    request = json.loads(record.value)
                    key = result_key(project_id=request["project_id"], reference_id=request["reference_id"])
                    value = json.dumps(
                        {"reference_id": request["reference_id"], "project_id": request["project_id"], "type": request["type"], "status": "Completed", "error": None, "padding": padding},
                        separators=(",", ":"),
                    ).encode()
                    pending.append(await producer.send(args.results, value=value, key=key.encode()))
            await asyncio.gather(*pending)
            await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--max-records", type=int, default=1000)
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--result-bytes", type=int, default=1000)
    parser.add_argument("--max-batch-size", type=int, default=16384)
    parser.add_argument("--compression", default="")
    asyncio.run(main(parser.parse_args()))
