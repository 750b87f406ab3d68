"""What every record generator shares: the record it returns and the state it draws from."""

from __future__ import annotations

import json
import random
from collections import deque
from dataclasses import dataclass, field

from fuzz.values import Budget
from schemas.signing import SigningKey
from fuzz.world import Request, World, key_of

Header = tuple[str, bytes | None]
REQUEST_TYPES = (
    "project.create", "project.rename", "asset.create", "asset.rename", "asset.delete",
    "customer.upsert", "customer.suspend", "customer.resume", "customer.delete",
    "wallet.open", "system_wallet.open", "wallet.set_status", "wallet.rename", "wallet.set_description",
    "transaction.run", "transaction.reverse", "hold.create", "hold.capture", "hold.void", "hold.expire",
)  # fmt: skip
# Header names the processor writes on answers: a request never carries them, so reading the
# requests topic back (a reply_to target) can never mistake a request for an answer.
ANSWER_HEADERS = frozenset({"source_topic", "source_partition", "source_offset", "dlq_reason", "request_type"})


class RawName(str):
    """A header name sent as raw bytes that need not be UTF-8, as a C client can send it. aiokafka
    encodes header names with `str.encode`; fuzz/sending.py sends records carrying one through
    aiokafka's pure-Python record builder, which calls this override."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawName:
        name = super().__new__(cls, raw.decode("latin-1"))
        name.raw = raw
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One record to send. `category` and `detail` stay in the fuzzer's memory, never in the record."""

    category: str
    detail: str
    value: bytes | None
    key: bytes | None = None
    headers: tuple[Header, ...] = ()
    partition: int | None = None
    unsigned: bool = False  # sent as it is: not signed with the run's key (forged_signature)


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidSent:
    """A valid request already sent: what retries and conflicting retries are built from."""

    request: Request
    key: bytes
    value: bytes
    headers: tuple[Header, ...]


@dataclass(kw_only=True)
class Context:
    """The generators' shared state; everything random comes from `rng` (reproducible by seed)."""

    world: World
    rng: random.Random
    budget: Budget
    requests_topic: str
    results_topic: str
    dlq_topic: str
    replies_topic: str
    missing_topics: tuple[str, ...]
    partitions: int  # of the requests topic
    max_request_bytes: int
    broker_max_bytes: int
    recent_valid: deque[ValidSent] = field(default_factory=lambda: deque(maxlen=512))
    recent_holds: deque[str] = field(default_factory=lambda: deque(maxlen=512))  # hold IDs made by valid_hold
    fragment_names: tuple[str, ...] = ()  # the hostile values mutations use (fuzz/values.py)
    reply_topics_named: set[str] = field(default_factory=set)
    near_limit_sent: int = 0
    signing_key: SigningKey | None = None  # signs what is sent (fuzz/sending.py)

    def any_request(self, n: int, *, prefix: str = "h") -> tuple[Request, bytes]:
        """A valid request of a random type aimed at the world, and its contract key."""
        request = self.world.template(self.rng.choice(REQUEST_TYPES), reference_id=f"{prefix}{n}", rng=self.rng)
        return request, key_of(request)


def encode(request: Request) -> bytes:
    return json.dumps(request).encode()
