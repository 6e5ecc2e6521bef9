"""SQL storage (SQLAlchemy Core): the schema, Alembic migrations and engine set-up.

SQLite by default, Postgres in fleets."""
