"""`cloudwallet`: run the processor, send a request, watch results, migrate the database."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from processor import logs
from processor.settings import ProcessorSettings, load_or_exit


def _settings() -> ProcessorSettings:
    return load_or_exit(ProcessorSettings, program="cloudwallet")


def run(args: argparse.Namespace) -> int:
    from schemas.signing import SigningError
    import sqlalchemy as sa

    from processor.storage.migrate import processor_role_problem, upgrade_to_head
    from processor.stream.app import Processor

    settings = _settings()
    if not args.no_migrate:
        try:
            upgrade_to_head(database_url=settings.database_url)  # at head: reads alembic_version only
        except sa.exc.ProgrammingError as error:
            if "permission denied" not in str(error) and "must be owner" not in str(error):
                raise
            print("cloudwallet run: the schema is behind and the processor's role may not migrate it: run `cloudwallet migrate` as the owner", file=sys.stderr)
            return 2
    if problem := processor_role_problem(database_url=settings.database_url):
        print(f"cloudwallet run: {problem}", file=sys.stderr)
        return 2
    from processor.telemetry import start_tracing, stop_tracing

    tracer_provider = start_tracing(settings, service_name="cloudwallet-processor")
    try:
        try:
            processor = Processor(settings=settings, tracer_provider=tracer_provider)
        except SigningError as error:
            print(f"cloudwallet run: {error}", file=sys.stderr)
            return 2
        app = processor.app()
        logs.limit_repeats()
        asyncio.run(app.run())
        return 0
    finally:
        stop_tracing(tracer_provider)


def send(args: argparse.Namespace) -> int:
    from processor.client import ResultTimeout, WalletClient

    settings = _settings()
    text = sys.stdin.read() if args.request == "-" else args.request
    try:
        request = json.loads(text)
    except json.JSONDecodeError as error:
        print(f"cloudwallet send: the request is not JSON: {error}", file=sys.stderr)
        return 2

    async def main() -> int:
        async with WalletClient(
            kafka=settings.kafka, signing_key=settings.client_signing_key, requests_topic=settings.requests_topic, results_topic=settings.results_topic
        ) as client:
            result = await client.submit(request, timeout=args.timeout)
        print(result.model_dump_json(indent=2, exclude_none=True))
        return 0 if result.status == "Completed" else 1

    from pydantic import ValidationError

    try:
        return asyncio.run(main())
    except ValidationError as error:
        print(f"cloudwallet send: invalid request:\n{error}", file=sys.stderr)
        return 2
    except ResultTimeout as error:
        print(f"cloudwallet send: {error}", file=sys.stderr)
        return 3


def tail(args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaConsumer

    from processor.client import read_result

    settings = _settings()

    def shown(record: object) -> str:
        """A result as clients read it: a repeat (`duplicate` header) as DuplicateReferenceId."""
        try:
            return read_result(record).model_dump_json(exclude_none=True)
        except ValueError:  # pydantic's ValidationError included: show what is there
            return record.value.decode("utf-8", "replace")  # type: ignore[attr-defined]

    async def main() -> None:
        consumer = AIOKafkaConsumer(
            settings.results_topic,
            **settings.kafka.options(),
            group_id=None,
            auto_offset_reset="earliest" if args.from_beginning else "latest",
        )
        await consumer.start()
        try:
            async for record in consumer:
                print(shown(record), flush=True)
        finally:
            await consumer.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


def migrate(args: argparse.Namespace) -> int:
    from processor.settings import DatabaseSettings
    from processor.storage.migrate import upgrade_to_head

    settings = load_or_exit(DatabaseSettings, program="cloudwallet migrate")
    upgrade_to_head(database_url=settings.database_url)
    print("database migrated to head")
    return 0


def kafka_acls(args: argparse.Namespace) -> int:
    """Print (or, with --apply, create) the ACLs of processor/stream/acls.py for the configured
    topics and group; applying needs a principal allowed to alter the cluster's ACLs."""
    from processor.stream import acls

    settings = _settings()
    principals = acls.Principals(processor=args.processor, writers=tuple(args.writer or acls.Principals().writers))
    table = acls.bindings(
        requests_topic=settings.requests_topic,
        results_topic=settings.results_topic,
        dlq_topic=settings.dlq_topic,
        consumer_group=settings.consumer_group,
        principals=principals,
    )
    print(acls.table_text(table))
    if not args.apply:
        print("(not applied: add --apply)", file=sys.stderr)
        return 0
    try:
        count = asyncio.run(acls.apply(kafka=settings.kafka, table=table))
    except acls.NoAuthorizer as error:
        print(f"cloudwallet kafka-acls: {error}", file=sys.stderr)
        return 0
    except Exception as error:  # noqa: BLE001 - the broker's refusal, said plainly
        print(f"cloudwallet kafka-acls: {type(error).__name__}: {error} (apply them as the operator, e.g. User:admin)", file=sys.stderr)
        return 1
    print(f"{count} ACLs in place", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloudwallet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("run", help="run the processor (migrates first when its role may; the owner runs `migrate`)")
    p.add_argument("--no-migrate", action="store_true", help="do not run database migrations at start")
    p.set_defaults(func=run)
    p = commands.add_parser("send", help="send one request (JSON, or - for stdin) and print its result")
    p.add_argument("request")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=send)
    p = commands.add_parser("tail", help="print results as they arrive")
    p.add_argument("--from-beginning", action="store_true")
    p.set_defaults(func=tail)
    p = commands.add_parser("migrate", help="migrate the database to the latest schema")
    p.set_defaults(func=migrate)
    p = commands.add_parser("kafka-acls", help="print, or --apply, the Kafka ACLs each principal needs")
    p.add_argument("--apply", action="store_true", help="create them (as a principal allowed to alter ACLs)")
    p.add_argument("--processor", default="User:processor", help="the processor's principal (default User:processor)")
    p.add_argument("--writer", action="append", help="a principal that sends requests and reads results (repeatable; default User:gateway and User:client)")
    p.set_defaults(func=kafka_acls)
    from processor.ingest.command import register as register_ingest

    register_ingest(commands)
    from processor.gateway.commands import add_commands as register_gateway
    from processor.gateway.commands import add_signing_commands

    register_gateway(commands)
    add_signing_commands(commands)
    args = parser.parse_args(argv)
    logs.configure()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
