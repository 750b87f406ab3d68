"""The gateway's routes, one module per resource, each an `APIRouter` of `GatewayRoute`s (the
key and its reach are checked before a request is read: access.py).

`ROUTERS` is every router in the order the app serves them (application.create_app includes
them; the order is also the order of the OpenAPI document's paths). What the routes share
(parameters, reaches, paging, the write step) is in dependencies.py.
"""

from __future__ import annotations

from fastapi import APIRouter

from processor.gateway.routes import assets, customers, health, holds, metrics, project_signing_keys, projects, request_results, transactions, wallets

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    metrics.router,
    projects.router,
    wallets.router,
    assets.router,
    transactions.router,
    holds.router,
    customers.router,
    request_results.router,
    project_signing_keys.router,
)
