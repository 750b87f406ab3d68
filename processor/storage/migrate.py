"""Schema migrations (Alembic), run programmatically: `python -m processor.storage.migrate`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(*, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def processor_role_problem(*, database_url: str) -> str | None:
    """Why DATABASE_URL's role cannot run the processor (None: it can). Row-level security is
    forced on the ledger's tables (migration 0005), and the processor writes history with COPY,
    which PostgreSQL refuses under it: the role must bypass it. The owner must not run it."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(sa.text("SELECT current_user, rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user")).one()
    finally:
        engine.dispose()
    if row[1]:
        return None
    return (
        f"database role {row[0]} cannot run the processor: it needs BYPASSRLS (row-level security is forced on the ledger's tables). "
        "Connect as the processor's role (the local stack: eval \"$(python3 deploy/local/stack.py env --as processor)\"); docs/security.md"
    )


def upgrade_to_head(*, database_url: str) -> None:
    command.upgrade(alembic_config(database_url=database_url), "head")


if __name__ == "__main__":
    from processor.settings import DatabaseSettings

    upgrade_to_head(database_url=DatabaseSettings().database_url)
    print("database migrated to head")
