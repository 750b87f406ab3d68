"""`GET /health`: answers once the app serves (its lifespan has connected to Kafka and
PostgreSQL). No key needed; not in the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter

from processor.gateway.access import GatewayRoute
from processor.gateway.bodies import Health

router = APIRouter(route_class=GatewayRoute)


@router.get("/health", include_in_schema=False)
def health() -> Health:
    return Health()
