"""The store's Alembic revisions apply in order on a store that is already in use, keeping what it holds."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from gateway.store.engine import MIGRATIONS, make_engine, open_store


def _upgrade(engine: sa.Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_boot_alarms_arrive_on_a_store_at_the_previous_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = make_engine(url)
    _upgrade(old, "0004")
    with old.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_events (seq, at, event, actor, mac) "
                             "VALUES (1, '2026-01-01 00:00:00', 'boot', 'system', :mac)"), {"mac": "a" * 64})
        assert "boot_alarms" not in sa.inspect(conn).get_table_names()
    old.dispose()
    engine = open_store(url)
    with engine.connect() as conn:
        assert {c["name"] for c in sa.inspect(conn).get_columns("boot_alarms")} == {"id", "at", "kind", "detail"}
        assert conn.execute(sa.text("SELECT event FROM audit_events")).scalars().all() == ["boot"]
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0005"
