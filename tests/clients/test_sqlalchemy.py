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


def test_orm_with_pgvector_vector(engine, open_dsn):
    """The ORM flow of pgvector-python's README, unchanged: a mapped class
    with a `Vector(3)` column and a bigserial key, `create_all`, `add_all`
    and `commit` (SQLAlchemy inserts with `INSERT … SELECT … RETURNING`
    to learn the keys), a filtered query ordered by `l2_distance`, `get`,
    an attribute change and a delete. Keys are 1, 2, 3 in insertion order
    (a new sequence); the nearest rows of category 1 to [1,1,1] are
    [1,1,1] itself (distance 0) then [1,2,3] (distance √5)."""
    from pgvector.sqlalchemy import Vector
    from sqlalchemy import BigInteger, Integer, Text, select
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

    with psycopg.connect(open_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS sa_items")

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "sa_items"
        id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        content: Mapped[str] = mapped_column(Text)
        category_id: Mapped[int] = mapped_column(Integer)
        embedding = mapped_column(Vector(3))

    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(
            [
                Item(content="a", category_id=1, embedding=[1, 2, 3]),
                Item(content="b", category_id=2, embedding=[4, 5, 6]),
                Item(content="c", category_id=1, embedding=[1, 1, 1]),
            ]
        )
        session.commit()
        assert [i.id for i in session.scalars(select(Item).order_by(Item.id))] == [1, 2, 3]
        nearest = session.scalars(
            select(Item)
            .filter(Item.category_id == 1)
            .order_by(Item.embedding.l2_distance([1, 1, 1]))
            .limit(5)
        ).all()
        assert [(i.id, i.content) for i in nearest] == [(3, "c"), (1, "a")]
        assert list(nearest[1].embedding) == [1.0, 2.0, 3.0]
        item = session.get(Item, 1)
        item.content = "changed"
        session.commit()
        session.delete(session.get(Item, 2))
        session.commit()
    # Read back over a second connection, outside the ORM.
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT id, content FROM sa_items ORDER BY id").fetchall()
    assert rows == [(1, "changed"), (3, "c")]
