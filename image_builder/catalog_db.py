"""Opening the catalog: an SQLAlchemy engine on any URL, migrated to the newest schema.

``open_catalog`` runs ``alembic upgrade head`` on every start (a no-op when current), so the
builder service, the CLI and the tests all work on the same schema. ``open_catalog(...,
migrate=False)`` is for readers (the spawner) that must never create or change a catalog.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


@dataclass
class Catalog:
    """An open catalog: its engine and a session factory."""

    url: str
    engine: Engine
    sessions: sessionmaker

    @contextmanager
    def session(self):
        """A session that commits on success and rolls back on error."""
        session: Session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()


def open_catalog(url: str, *, migrate: bool = True) -> Catalog:
    """Open the catalog at the SQLAlchemy ``url``; with ``migrate``, bring it to head first."""
    parsed = make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database and migrate:
        database = Path(parsed.database)
        database.parent.mkdir(parents=True, exist_ok=True)
        if not database.exists():
            database.touch(mode=0o600)
        os.chmod(database, 0o600)
    engine = create_engine(url, future=True)
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate:
        upgrade(engine)
    return Catalog(url=url, engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the alembic migrations up to ``revision`` on ``engine``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def has_schema(engine: Engine) -> bool:
    return inspect(engine).has_table("environments")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
