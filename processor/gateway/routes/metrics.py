"""`GET /metrics`: the gateway's Prometheus metrics (request_metrics.py). Operator keys only: the
numbers describe every tenant's traffic. Not in the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processor.gateway.access import GatewayRoute, Operator

router = APIRouter(route_class=GatewayRoute)


@router.get("/metrics", include_in_schema=False)
def metrics(principal: Operator) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
