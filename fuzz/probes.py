"""Stall probes: after the hostile load, one valid request on every request partition, each of
which must be answered within seconds. A partition stuck behind a poison record never answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncio
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from fuzz.accounting import Answers
from fuzz.context import encode
from fuzz.world import World, key_of
from schemas.results import result_key

if TYPE_CHECKING:
    from schemas.signing import SigningKey


@dataclass(frozen=True, kw_only=True)
class Probe:
    partition: int
    offset: int
    key: bytes  # the result's key, project/reference
    sent_at: float


@dataclass(frozen=True, kw_only=True)
class ProbeOutcome:
    partition: int
    offset: int
    answered: bool
    seconds: float | None


async def send_probes(
    *, producer: AIOKafkaProducer, topic: str, world: World, partitions: list[int], answers: Answers, signing_key: SigningKey | None
) -> list[Probe]:
    token = uuid.uuid4().hex[:6]
    probes = []
    for partition in partitions:
        request = world.probe(reference_id=f"probe-{token}-{partition}", customer=partition)
        key = result_key(project_id=world.project, reference_id=request["reference_id"]).encode()
        answers.watch(key)
        sent_at = time.monotonic()
        value = encode(request)
        headers = signing_key.headers(value) if signing_key is not None else None
        metadata = await producer.send_and_wait(topic, value=value, key=key_of(request), partition=partition, headers=headers)
        probes.append(Probe(partition=partition, offset=metadata.offset, key=key, sent_at=sent_at))
    return probes


def _answered_at(probe: Probe, *, answers: Answers) -> float | None:
    """When the probe's result arrived: by its key, or by the source headers naming it."""
    arrived = answers.watched.get(probe.key)
    if arrived is None and answers.state(probe.partition, probe.offset):
        arrived = time.monotonic()
    return arrived


async def await_probes(probes: list[Probe], *, answers: Answers, timeout: float) -> list[ProbeOutcome]:
    """Wait up to `timeout` seconds after each probe was sent for its answer."""
    arrivals: dict[int, float] = {}
    deadline = max((probe.sent_at for probe in probes), default=time.monotonic()) + timeout
    while True:
        for probe in probes:
            if probe.partition not in arrivals and (arrived := _answered_at(probe, answers=answers)) is not None:
                arrivals[probe.partition] = arrived
        if len(arrivals) == len(probes) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.05)
    return [
        ProbeOutcome(
            partition=probe.partition,
            offset=probe.offset,
            answered=probe.partition in arrivals and arrivals[probe.partition] - probe.sent_at <= timeout,
            seconds=round(arrivals[probe.partition] - probe.sent_at, 3) if probe.partition in arrivals else None,
        )
        for probe in probes
    ]
