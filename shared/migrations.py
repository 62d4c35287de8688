"""Run Alembic from code: `sortloop migrate`, `make dev` and the tests all go through here."""

from __future__ import annotations

import warnings
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from sqlalchemy import DateTime, create_engine, pool

from alembic import command
from shared.config import PROJECT_ROOT
from shared.models import Base, UTCDateTime


def _alembic_dir(configured: str = "") -> Path:
    """``configured`` (Config.alembic_dir, SORTLOOP_ALEMBIC_DIR) first, then beside the
    code, then in the working directory."""
    candidates = [
        configured,
        str(PROJECT_ROOT / "alembic"),
        str(Path.cwd() / "alembic"),
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "env.py").is_file():
            return Path(candidate)
    raise FileNotFoundError("alembic/ not found: set SORTLOOP_ALEMBIC_DIR to its path")


def alembic_config(database_url: str, alembic_dir: str = "") -> AlembicConfig:
    directory = _alembic_dir(alembic_dir)
    config = AlembicConfig(str(directory.parent / "alembic.ini"))
    config.set_main_option("script_location", str(directory))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head", alembic_dir: str = "") -> None:
    command.upgrade(alembic_config(database_url, alembic_dir), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def render_item(type_: str, obj, autogen_context):
    """Render our UTC timestamp type as a plain timezone-aware DateTime in migrations."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def compare_type(context_, inspected_column, metadata_column, inspected_type, metadata_type):
    """UTCDateTime matches any reflected DateTime; everything else uses Alembic's comparison."""
    if isinstance(metadata_type, UTCDateTime):
        return not isinstance(inspected_type, DateTime)
    return None


def schema_differences(database_url: str) -> list:
    """What autogenerate would change: empty when the models and the migrations agree."""
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection, warnings.catch_warnings():
            # The full-text indexes exist on PostgreSQL only (they are compared there).
            warnings.filterwarnings(
                "ignore", message=r"autogenerate skipping .* index '\w+_message_search'"
            )
            context = MigrationContext.configure(
                connection, opts={"compare_type": compare_type, "render_item": render_item}
            )
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
