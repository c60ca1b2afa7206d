"""SQLAlchemy 2 (postgresql+psycopg) against the Postgres front end: it
connects (it reads the server version from `select pg_catalog.version()`),
and its inspector lists a table created here from the catalog."""

import os

import psycopg
import pytest
import sqlalchemy
from sqlalchemy import create_engine, inspect, text


@pytest.fixture
def engine():
    url = "postgresql+psycopg://tester@{}:{}/valori".format(
        os.environ["VALORI_PG_HOST"], os.environ["VALORI_PG_PORT"]
    )
    e = create_engine(url)
    yield e
    e.dispose()


def test_connects_and_reads_the_version(engine, open_dsn):
    """connect() succeeds and the dialect parsed a 16.x server version
    from version(), which starts with PostgreSQL 16."""
    with engine.connect() as conn:
        version = conn.execute(text("select pg_catalog.version()")).scalar_one()
        assert version.startswith("PostgreSQL 16."), version
        assert conn.execute(text("select current_schema()")).scalar_one() == "public"
    assert engine.dialect.server_version_info[0] == 16


def test_inspector_reflects_a_table(engine, open_dsn):
    """get_table_names lists the table and has_table finds it (and not a
    missing one). get_columns' query holds a correlated subquery
    DataFusion cannot plan: it is refused with 0A000 naming it, not
    answered with made-up rows."""
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS sa_docs")
        conn.execute("CREATE TABLE sa_docs (id BIGINT, vec VECTOR(4), tag BIGINT, metadata BYTEA)")
    inspector = inspect(engine)
    assert "sa_docs" in inspector.get_table_names()
    assert inspector.has_table("sa_docs")
    assert not inspector.has_table("sa_missing")
    with pytest.raises(sqlalchemy.exc.DBAPIError) as err:
        inspector.get_columns("sa_docs")
    assert err.value.orig.sqlstate == "0A000", err.value
    assert "subquer" in str(err.value).lower(), err.value


def test_unanswerable_catalog_query_is_an_error(open_dsn):
    """A catalog table Valori does not have is an error naming it
    (SQLSTATE 42P01), not an empty answer."""
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable) as err:
            conn.execute("SELECT * FROM pg_catalog.pg_no_such_table").fetchall()
        assert "pg_no_such_table" in str(err.value)
