"""The gateway's settings: the processor's (same topics, same database) plus its own."""

from __future__ import annotations

from pydantic import Field

from processor.settings import ProcessorSettings


class GatewaySettings(ProcessorSettings):
    result_wait_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="how long a write waits for its result before answering 202 with a Location to poll",
    )
    api_key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="how long a verified API key is remembered (0: look it up on every request); bounds revocation delay",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576, description="larger request bodies get 413")
