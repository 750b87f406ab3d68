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


def upgrade_to_head(*, database_url: str) -> None:
    command.upgrade(alembic_config(database_url=database_url), "head")


if __name__ == "__main__":
    from processor.settings import DatabaseSettings

    upgrade_to_head(database_url=DatabaseSettings().database_url)
    print("database migrated to head")
