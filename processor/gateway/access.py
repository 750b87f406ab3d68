"""Who may call what: the API key (401), then its reach (403), before the request is read.

FastAPI reads and parses a JSON body, and validates path, query and header parameters, before
it calls a route's dependencies. A key check done as an ordinary dependency therefore answers 422
(a malformed wallet ID, a bad `page_size`, a body that is not JSON) where docs/gateway.md says
401 or 403 come first. So every route of the gateway is a `GatewayRoute`: it checks the key and
its reach on the raw path parameters first, and only then lets FastAPI read and validate the
request.

A route declares its reach by the type of its `principal` parameter: `Caller` (any key),
`Staff`, `Operator`, `Member` or `WalletReader`. The dependency behind that type finds the check
already done and hands the route the principal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, Request, Response, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool

from processor.gateway.http_errors import forbidden, unauthorized
from processor.gateway.api_keys import KeyKind, Principal
from schemas.requests import WalletId

API_KEY_HEADER = "X-Api-Key"
api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="an API key: operator, project or customer")
ApiKey = Annotated[str | None, Security(api_key_header)]

# The contract's wallet ID: every wallet was opened under one, and the `walletId` path parameter
# (dependencies.WalletIdPath) is that very type, checked by the same pydantic validator.
_WALLET_ID = TypeAdapter(WalletId)


class Reach(Enum):
    any_key = "any active key"
    staff = "operator and project keys"
    operator = "operator keys"
    member = "operator keys, and project keys of {projectId}"
    wallet_reader = "as member, and customer keys of {projectId} for their own {customerId} and the wallets they own"


def reaches(request: Request, principal: Principal, *, reach: Reach) -> bool:
    """Whether the key reaches this request. Only raw path parameters: nothing validated yet."""
    if reach is Reach.any_key:
        return True
    if reach is Reach.operator:
        return principal.kind is KeyKind.operator
    if principal.kind is KeyKind.customer:
        return reach is Reach.wallet_reader and _customer_reaches(request, principal)
    return reach is Reach.staff or principal.may_access_project(request.path_params["projectId"])


def _customer_reaches(request: Request, principal: Principal) -> bool:
    """Its project; in it its own customer ID, or a wallet it owns.

    Ownership needs a lookup. A wallet ID the contract refuses cannot be one of its wallets (all
    were opened under valid IDs), so it is refused without one: 403, before the route's 422.
    """
    params = request.path_params
    if params["projectId"] != principal.project_id:
        return False
    if "customerId" in params:
        return params["customerId"] == principal.customer_id
    wallet_id = params["walletId"]
    try:
        _WALLET_ID.validate_python(wallet_id)
    except PydanticValidationError:
        return False
    wallet = request.app.state.reads.get_wallet(principal.project_id, wallet_id)
    return wallet is not None and wallet.customer_id == principal.customer_id


def _principal(request: Request, api_key: str | None) -> Principal:
    if not api_key:
        raise unauthorized("an API key is required in the X-Api-Key header")
    principal = request.app.state.keys.lookup(api_key)
    if principal is None:
        raise unauthorized("unknown or revoked API key")
    return principal


def _checked(request: Request, *, reach: Reach) -> Principal | None:
    done: tuple[Reach, Principal] | None = getattr(request.state, "gateway_access", None)
    return done[1] if done is not None and done[0] is reach else None


def check_access(request: Request, *, reach: Reach, api_key: str | None) -> Principal:
    """The caller, if its key is active (else 401) and reaches this request (else 403).

    Blocking (key and wallet lookups): call it from a worker thread, or through `access`.
    """
    principal = _principal(request, api_key)
    if not reaches(request, principal, reach=reach):
        raise forbidden()
    request.state.gateway_access = (reach, principal)
    return principal


async def access(request: Request, *, reach: Reach, api_key: str | None) -> Principal:
    """check_access, once per request: GatewayRoute checks first, the route's dependency then
    finds it done (without a trip to a worker thread)."""
    return _checked(request, reach=reach) or await run_in_threadpool(check_access, request, reach=reach, api_key=api_key)


# The dependencies a route's `principal` parameter declares.


async def caller(request: Request, api_key: ApiKey = None) -> Principal:
    return await access(request, reach=Reach.any_key, api_key=api_key)


async def staff(request: Request, api_key: ApiKey = None) -> Principal:
    return await access(request, reach=Reach.staff, api_key=api_key)


async def operator(request: Request, api_key: ApiKey = None) -> Principal:
    return await access(request, reach=Reach.operator, api_key=api_key)


async def project_member(request: Request, api_key: ApiKey = None) -> Principal:
    return await access(request, reach=Reach.member, api_key=api_key)


async def wallet_reader(request: Request, api_key: ApiKey = None) -> Principal:
    return await access(request, reach=Reach.wallet_reader, api_key=api_key)


REACH_OF: dict[Callable[..., Awaitable[Principal]], Reach] = {
    caller: Reach.any_key,
    staff: Reach.staff,
    operator: Reach.operator,
    project_member: Reach.member,
    wallet_reader: Reach.wallet_reader,
}

Caller = Annotated[Principal, Depends(caller)]
Staff = Annotated[Principal, Depends(staff)]
Operator = Annotated[Principal, Depends(operator)]
Member = Annotated[Principal, Depends(project_member)]
WalletReader = Annotated[Principal, Depends(wallet_reader)]


def declared_reach(dependant: Dependant) -> Reach | None:
    """The reach a route declares through its parameters; None for a route without a key."""
    found = {REACH_OF[d.call] for d in dependant.dependencies if d.call in REACH_OF}
    if len(found) > 1:
        raise TypeError(f"{dependant.call!r} declares more than one reach: {sorted(r.name for r in found)}")
    return next(iter(found), None)


class GatewayRoute(APIRoute):
    """An APIRoute that checks the key (401) and its reach (403) before FastAPI reads the body
    or validates a parameter (413, 415, 422)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        reach = declared_reach(self.dependant)
        if reach is None:
            return handler

        async def checked(request: Request) -> Response:
            await access(request, reach=reach, api_key=request.headers.get(API_KEY_HEADER))
            return await handler(request)

        return checked
