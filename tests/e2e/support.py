"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaProducer

from processor.client import WalletClient
from schemas.requests import RequestAdapter, partition_key


async def collect_results(*, topology, count: int | None = None, references: set[str] | None = None, timeout: float = 60) -> list:
    """Read the results topic from the beginning until `count` records, or a result for every
    one of `references`, are there (or the timeout passes): [(key, Result, headers)], each
    Result as the client reads it (a `duplicate` record is DuplicateReferenceId)."""
    from aiokafka import AIOKafkaConsumer

    from processor.client import read_result

    consumer = AIOKafkaConsumer(topology.results_topic, **topology.kafka.options(), group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    found: list = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        seen: set[str] = set()

        def done() -> bool:
            if references is not None:
                return references <= seen
            return count is not None and len(found) >= count

        while not done() and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    result = read_result(record)
                    found.append((record.key.decode(), result, dict(record.headers or ())))
                    seen.add(result.reference_id)
    finally:
        await consumer.stop()
    return found


class TcpProxy:
    """A TCP proxy on 127.0.0.1 that a test can cut (an outage) and restore."""

    def __init__(self, *, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> "TcpProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._pipes.update((writer, upstream_writer))

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))
        self._pipes.difference_update((writer, upstream_writer))

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        assert self._server is not None
        self._server.close()
        for pipe in list(self._pipes):
            pipe.transport.abort()
        self._pipes.clear()
        await self._server.wait_closed()
        self._server = None

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()


def project_setup(project: str, wallets: list[str], *, fund: str | None = None) -> list[dict]:
    requests = [
        {"type": "project.create", "project_id": project, "name": "E2E", "reference_id": f"{project}-p"},
        {"type": "asset.create", "project_id": project, "asset_id": "usd", "code": "USD", "name": "Dollar", "fractions": 100, "reference_id": f"{project}-a"},
    ]
    for wallet in wallets:
        requests.append({"type": "system_wallet.open", "project_id": project, "asset_id": "usd", "wallet_id": wallet, "reference_id": f"{project}-open-{wallet}"})
    if fund is not None:
        requests.append(
            {
                "type": "transaction.run",
                "project_id": project,
                "reference_id": f"{project}-fund",
                "operations": [{"type": "Issue", "wallet_id": w, "amount": fund} for w in wallets],
            }
        )
    return requests


async def submit_all(client: WalletClient, requests: list[dict]) -> list:
    return [await client.submit(request, timeout=30) for request in requests]


async def produce_raw(
    topology, records: list[tuple[bytes | None, bytes, int | None]], *, sign: bool = True, extra_headers: list[tuple[str, bytes]] = (), **producer_options
) -> None:
    """Send records as they are; signed with the topology's operator key unless `sign=False`,
    with `extra_headers` after the signature's."""
    producer = AIOKafkaProducer(**topology.client_kafka.options(), **producer_options)
    await producer.start()
    try:
        for key, value, partition in records:
            headers = [*(topology.signing_key.headers(value) if sign and value is not None else []), *extra_headers] or None
            await producer.send(topology.requests_topic, value=value, key=key, partition=partition, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


def encoded(request: dict) -> tuple[bytes, bytes, None]:
    model = RequestAdapter.validate_python(request)
    return partition_key(model).encode(), json.dumps(request).encode(), None
