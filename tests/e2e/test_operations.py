"""The processor as operators see it: /metrics after real traffic, readiness that follows
PostgreSQL, liveness (processor/stream/health.py, processor/stream/metrics.py)."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid

import httpx
import pytest
import sqlalchemy as sa

from .support import TcpProxy, collect_results, encoded, produce_raw, project_setup, submit_all

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def samples(text: str, name: str) -> dict[str, float]:
    """Every sample of metric `name` in Prometheus' text format: {labels: value}."""
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(\{{[^}}]*\}})? (\S+)", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


async def get(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(f"http://127.0.0.1:{port}{path}")


async def test_metrics_after_real_traffic_and_readiness_that_follows_postgresql(processors, client, topology):
    url = sa.engine.make_url(topology.roles.database_url["processor"])
    proxy = await TcpProxy(target_host=url.host, target_port=url.port).start()
    proxied_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    port = free_port()
    try:
        worker = processors("observed", extra_env={"DATABASE_URL": proxied_url, "CLOUDWALLET_HEALTH_PORT": str(port)}, wait=False)
        await asyncio.to_thread(worker.wait_started)  # through the proxy, which runs on this loop
        assert (await get(port, "/health/live")).status_code == 200
        project = f"ops-{uuid.uuid4().hex[:6]}"
        await submit_all(client, project_setup(project, ["a", "b"], fund="10"))
        refused = {"type": "transaction.run", "project_id": project, "reference_id": "too-much",
                   "operations": [{"type": "Redeem", "wallet_id": "a", "amount": "11"}]}
        await produce_raw(topology, [encoded(refused), (b"k", b"not json at all", None)])
        await collect_results(topology=topology, references={"too-much"}, timeout=30)
        for _ in range(40):  # the readiness of a processor that has its partitions
            ready = await get(port, "/health/ready")
            if ready.status_code == 200:
                break
            await asyncio.sleep(0.25)
        assert ready.status_code == 200, ready.text

        text = (await get(port, "/metrics")).text
        assert samples(text, "cloudwallet_batch_records_count")[""] >= 1
        assert samples(text, "cloudwallet_batch_seconds_count")['{stage="apply_and_commit"}'] >= 1
        phases = samples(text, "cloudwallet_batch_phase_seconds_count")
        assert {f'{{phase="{phase}"}}' for phase in ("decode", "load_and_lock", "engine", "write", "commit")} <= set(phases), phases
        results = samples(text, "cloudwallet_results_total")
        assert results['{code="",status="Completed"}'] == 5  # the project, its asset, two wallets, the funding
        assert results['{code="InsufficientFunds",status="Failed"}'] == 1
        assert sum(samples(text, "cloudwallet_dead_letters_total").values()) >= 1
        lags = samples(text, "cloudwallet_consumer_lag_records")
        assert lags and all(value >= 0 for value in lags.values())
        assert "" in samples(text, "cloudwallet_batches_in_flight")

        await proxy.cut()  # PostgreSQL goes away: not ready, still alive
        not_ready = await get(port, "/health/ready")
        assert not_ready.status_code == 503 and "PostgreSQL" in " ".join(not_ready.json()["problems"]), not_ready.text
        assert (await get(port, "/health/live")).status_code == 200
        await proxy.restore()
        for _ in range(40):
            if (await get(port, "/health/ready")).status_code == 200:
                break
            await asyncio.sleep(0.25)
        assert (await get(port, "/health/ready")).status_code == 200
    finally:
        await proxy.close()
