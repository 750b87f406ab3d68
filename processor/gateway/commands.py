"""`cloudwallet gateway` (serve the HTTP gateway) and `cloudwallet gateway-key` (manage API keys).

Registered by processor/cli.py through `add_commands`; heavy imports happen inside the commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _load(settings_class: Any) -> Any:
    from processor.settings import load_or_exit

    return load_or_exit(settings_class, program="cloudwallet")


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from processor.gateway.application import create_app
    from processor.gateway.gateway_settings import GatewaySettings
    from processor.telemetry import start_tracing, stop_tracing

    settings = _load(GatewaySettings)
    if not args.no_migrate:
        from processor.storage.migrate import upgrade_to_head

        upgrade_to_head(database_url=settings.database_url)
    tracer_provider = start_tracing(settings, service_name="cloudwallet-gateway")
    try:
        uvicorn.run(
            create_app(settings, tracer_provider=tracer_provider),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=args.access_log,
            lifespan="on",
            server_header=False,
        )
    finally:
        stop_tracing(tracer_provider)
    return 0


def _on_database(work: Callable[[Any], T]) -> T:
    """`work` on an engine of DATABASE_URL, disposed after: each command is one short job."""
    import sqlalchemy as sa

    from processor.settings import DatabaseSettings

    engine = sa.create_engine(_load(DatabaseSettings).database_url)
    try:
        return work(engine)
    finally:
        engine.dispose()


def _revoke_answer(revoked: bool, *, missing: str, done: str) -> int:
    """Exit status of a revoke command: 1 (and why) when there was no such active key."""
    print(done if revoked else missing, file=sys.stderr)
    return 0 if revoked else 1


def _missing_table(error: Exception) -> int:
    if "permission denied" in str(error):
        print("cloudwallet gateway-key: DATABASE_URL's role may not use api_keys: run it as the gateway's role or the owner (docs/security.md)", file=sys.stderr)
    else:
        print(f"cloudwallet gateway-key: the api_keys table is missing; run `cloudwallet migrate` first ({type(error).__name__})", file=sys.stderr)
    return 2


def key_create(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from processor.gateway.api_keys import create_key

    try:
        created = _on_database(
            lambda engine: create_key(engine, kind=args.kind, project_id=args.project, customer_id=args.customer, label=args.label)
        )
    except ValueError as error:
        print(f"cloudwallet gateway-key create: {error}", file=sys.stderr)
        return 2
    except sa.exc.ProgrammingError as error:
        return _missing_table(error)
    scope = {"project": created.principal.project_id, "customer": created.principal.customer_id}
    scope_text = ", ".join(f"{k} {v!r}" for k, v in scope.items() if v is not None) or "all projects"
    print(f"created {created.principal.kind} key {created.key_id} ({scope_text}); it is shown only this once:", file=sys.stderr)
    print(created.token)
    return 0


def key_list(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from processor.gateway.api_keys import list_keys

    try:
        rows = _on_database(list_keys)
    except sa.exc.ProgrammingError as error:
        return _missing_table(error)
    for row in rows:
        state = f"revoked {row.revoked_at.isoformat()}" if row.revoked_at else "active"
        print(
            f"{row.key_id}\t{row.kind}\tproject={row.project_id or '*'}\tcustomer={row.customer_id or '*'}"
            f"\t{state}\tcreated {row.created_at.isoformat()}\t{row.label or ''}"
        )
    return 0


def key_revoke(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from processor.gateway.api_keys import revoke_key

    try:
        revoked = _on_database(lambda engine: revoke_key(engine, args.key_id))
    except sa.exc.ProgrammingError as error:
        return _missing_table(error)
    return _revoke_answer(
        revoked,
        missing=f"cloudwallet gateway-key revoke: no active key {args.key_id!r}",
        done=f"revoked key {args.key_id} (gateways forget it within CLOUDWALLET_API_KEY_CACHE_SECONDS)",
    )


def signing_create(args: argparse.Namespace) -> int:
    from processor.settings import SigningSettings
    from schemas.signing import SigningError
    from processor.signing_keys import create_signing_key

    if bool(args.project) == bool(args.operator):
        print("cloudwallet signing-key create: give --project P (a key for one project) or --operator (any project)", file=sys.stderr)
        return 2
    settings = _load(SigningSettings)
    try:
        key = _on_database(
            lambda engine: create_signing_key(engine, master=settings.master_secret(), project_id=args.project, label=args.label)
        )
    except SigningError as error:
        print(f"cloudwallet signing-key create: {error}", file=sys.stderr)
        return 2
    print(f"created signing key {key.key_id} ({'project ' + repr(args.project) if args.project else 'operator: any project'}); shown only this once:", file=sys.stderr)
    print(key.token())
    return 0


def signing_list(args: argparse.Namespace) -> int:
    from processor.signing_keys import list_signing_keys

    rows = _on_database(lambda engine: list_signing_keys(engine, project_id=args.project))
    for row in rows:
        state = f"revoked {row.revoked_at.isoformat()}" if row.revoked_at else "active"
        print(f"{row.key_id}	project={row.project_id or '*'}	{state}	created {row.created_at.isoformat()}	{row.label or ''}")
    return 0


def signing_revoke(args: argparse.Namespace) -> int:
    from processor.signing_keys import revoke_signing_key

    revoked = _on_database(lambda engine: revoke_signing_key(engine, args.key_id))
    return _revoke_answer(
        revoked,
        missing=f"cloudwallet signing-key revoke: no active signing key {args.key_id!r}",
        done=f"revoked signing key {args.key_id}: requests signed with it are refused from the processor's next batch",
    )


def add_signing_commands(commands: Any) -> None:
    p = commands.add_parser("signing-key", help="create, list or revoke request signing keys (the tenant wall)")
    keys = p.add_subparsers(dest="signing_command", required=True)
    c = keys.add_parser("create", help="create a key and print its token (only this once)")
    c.add_argument("--project", help="the one project the key may act in")
    c.add_argument("--operator", action="store_true", help="a key that may act in any project and create projects")
    c.add_argument("--label", help="a note to recognise the key by")
    c.set_defaults(func=signing_create)
    c = keys.add_parser("list", help="list keys (never their secrets)")
    c.add_argument("--project", help="only this project's keys")
    c.set_defaults(func=signing_list)
    c = keys.add_parser("revoke", help="revoke a key")
    c.add_argument("key_id")
    c.set_defaults(func=signing_revoke)


def add_commands(commands: Any) -> None:
    """Register `gateway` and `gateway-key` on the `cloudwallet` subparsers."""
    p = commands.add_parser("gateway", help="serve the HTTP gateway (use --no-migrate: the owner runs `cloudwallet migrate`)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--no-migrate", action="store_true", help="do not run database migrations at start")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(func=serve)

    p = commands.add_parser("gateway-key", help="create, list or revoke gateway API keys")
    keys = p.add_subparsers(dest="key_command", required=True)
    c = keys.add_parser("create", help="create a key and print it (only this once)")
    c.add_argument("--kind", required=True, choices=["operator", "project", "customer"])
    c.add_argument("--project", help="the project of a project or customer key")
    c.add_argument("--customer", help="the customer of a customer key")
    c.add_argument("--label", help="a note to recognise the key by")
    c.set_defaults(func=key_create)
    c = keys.add_parser("list", help="list keys (never the keys themselves)")
    c.set_defaults(func=key_list)
    c = keys.add_parser("revoke", help="revoke a key by its ID")
    c.add_argument("key_id")
    c.set_defaults(func=key_revoke)
