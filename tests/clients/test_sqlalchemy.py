"""SQLAlchemy 2 (postgresql+psycopg) against the Postgres front end: it
connects (it reads the server version from `select pg_catalog.version()`),
and its inspector reflects tables created here from the catalog: columns,
defaults, keys and indexes."""

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
    missing one); get_columns lists its columns in order (the fixed
    layout's SQL schema adds `vec_q16`, the vector's exact Q16.16 form,
    after `vec`) with no defaults."""
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS sa_docs")
        conn.execute("CREATE TABLE sa_docs (id BIGINT, vec VECTOR(4), tag BIGINT, metadata BYTEA)")
    inspector = inspect(engine)
    assert "sa_docs" in inspector.get_table_names()
    assert inspector.has_table("sa_docs")
    assert not inspector.has_table("sa_missing")
    columns = inspector.get_columns("sa_docs")
    assert [c["name"] for c in columns] == ["id", "vec", "vec_q16", "tag", "metadata"]
    assert [c["default"] for c in columns] == [None] * 5


def test_inspector_reflects_keys_defaults_and_indexes(engine, open_dsn):
    """pgvector's README table and a table with a unique column, reflected
    by SQLAlchemy's inspector as it reflects them from Postgres 16: the
    bigserial key's default is its sequence's nextval (autoincrement),
    `DEFAULT 3` reads back as '3', a string default as "'x'::text", a
    function default as 'now()'; the primary keys are <table>_pkey on the
    key column; the unique column's constraint is <table>_<column>_key
    (also listed by get_indexes as a unique index duplicating it); the
    HNSW index is a non-unique index using hnsw; the btree index on
    category_id is <table>_category_id_idx."""
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        for t in ("sa_keyed", "sa_users"):
            conn.execute(f"DROP TABLE IF EXISTS {t}")
        conn.execute(
            "CREATE TABLE sa_keyed (id bigserial PRIMARY KEY, content text NOT NULL, "
            "category_id int DEFAULT 3, embedding vector(3))"
        )
        conn.execute("CREATE INDEX ON sa_keyed USING hnsw (embedding vector_l2_ops)")
        conn.execute("CREATE INDEX ON sa_keyed (category_id)")
        conn.execute(
            "CREATE TABLE sa_users (id int PRIMARY KEY, email text UNIQUE, "
            "name text DEFAULT 'x', created timestamptz DEFAULT now())"
        )
    inspector = inspect(engine)
    columns = {c["name"]: c for c in inspector.get_columns("sa_keyed")}
    assert columns["id"]["default"] == "nextval('sa_keyed_id_seq'::regclass)"
    assert columns["id"]["autoincrement"] is True
    assert columns["content"]["default"] is None
    assert columns["content"]["nullable"] is False
    assert columns["category_id"]["default"] == "3"
    users = {c["name"]: c["default"] for c in inspector.get_columns("sa_users")}
    assert users == {"id": None, "email": None, "name": "'x'::text", "created": "now()"}

    pk = inspector.get_pk_constraint("sa_keyed")
    assert (pk["name"], pk["constrained_columns"]) == ("sa_keyed_pkey", ["id"])
    pk = inspector.get_pk_constraint("sa_users")
    assert (pk["name"], pk["constrained_columns"]) == ("sa_users_pkey", ["id"])
    assert inspector.get_unique_constraints("sa_keyed") == []
    unique = inspector.get_unique_constraints("sa_users")
    assert [(u["name"], u["column_names"]) for u in unique] == [("sa_users_email_key", ["email"])]

    indexes = inspector.get_indexes("sa_keyed")
    assert [(i["name"], i["unique"], i["column_names"]) for i in indexes] == [
        ("sa_keyed_category_id_idx", False, ["category_id"]),
        ("sa_keyed_embedding_idx", False, ["embedding"]),
    ]
    # SQLAlchemy names the access method only when it is not btree.
    assert "postgresql_using" not in indexes[0]["dialect_options"]
    assert indexes[1]["dialect_options"]["postgresql_using"] == "hnsw"
    indexes = inspector.get_indexes("sa_users")
    assert [(i["name"], i["unique"], i["column_names"]) for i in indexes] == [
        ("sa_users_email_key", True, ["email"])
    ]
    assert indexes[0]["duplicates_constraint"] == "sa_users_email_key"


def test_inspector_reflects_foreign_keys_and_unique_sets(engine, open_dsn):
    """A foreign key and a unique constraint over two columns, reflected
    as SQLAlchemy reflects them from Postgres: get_foreign_keys names the
    referenced table and column and the ON DELETE action;
    get_unique_constraints lists the two-column constraint with its
    columns in order (and get_indexes the unique index that enforces it);
    a Table autoloaded from the catalog knows its foreign key."""
    from sqlalchemy import MetaData, Table

    with psycopg.connect(open_dsn, autocommit=True) as conn:
        for t in ("sa_chunk", "sa_doc"):
            conn.execute(f"DROP TABLE IF EXISTS {t}")
        conn.execute("CREATE TABLE sa_doc (id int PRIMARY KEY, title text)")
        conn.execute(
            "CREATE TABLE sa_chunk (id int PRIMARY KEY, doc_id int REFERENCES sa_doc (id) "
            "ON DELETE CASCADE, seq int, UNIQUE (doc_id, seq))"
        )
    inspector = inspect(engine)
    keys = inspector.get_foreign_keys("sa_chunk")
    assert [
        (k["name"], k["constrained_columns"], k["referred_table"], k["referred_columns"], k["options"])
        for k in keys
    ] == [("sa_chunk_doc_id_fkey", ["doc_id"], "sa_doc", ["id"], {"ondelete": "CASCADE"})]
    unique = inspector.get_unique_constraints("sa_chunk")
    assert [(u["name"], u["column_names"]) for u in unique] == [
        ("sa_chunk_doc_id_seq_key", ["doc_id", "seq"])
    ]
    indexes = inspector.get_indexes("sa_chunk")
    assert [(i["name"], i["unique"], i["column_names"]) for i in indexes] == [
        ("sa_chunk_doc_id_seq_key", True, ["doc_id", "seq"])
    ]
    table = Table("sa_chunk", MetaData(), autoload_with=engine)
    assert [fk.target_fullname for fk in table.c.doc_id.foreign_keys] == ["sa_doc.id"]
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE sa_chunk, sa_doc")


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
    from pgvector.sqlalchemy import Vector
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


def test_alter_table_through_raw_ddl_then_reflection_and_reads(engine, open_dsn):
    """A migration as Alembic's `op.add_column` / `op.drop_column` /
    `op.alter_column(new_column_name=…)` emit it: raw `ALTER TABLE` DDL
    through SQLAlchemy, then a freshly reflected Table reads the new
    shape. The old rows read the added column's default (computed here:
    7); a NOT NULL column without a default on a table with rows is
    refused as Postgres refuses it (23502), and an unsupported form with
    0A000, each leaving the table as it was."""
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS sa_migrated")
        conn.execute(
            "CREATE TABLE sa_migrated (id bigserial PRIMARY KEY, embedding vector(2), title text, legacy int)"
        )
        conn.execute(
            "INSERT INTO sa_migrated (embedding, title, legacy) VALUES ('[1,1]', 'a', 1), ('[2,2]', 'b', 2)"
        )
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE sa_migrated ADD COLUMN rank integer DEFAULT 7 NOT NULL")
        conn.exec_driver_sql("ALTER TABLE sa_migrated DROP COLUMN legacy")
        conn.exec_driver_sql("ALTER TABLE sa_migrated RENAME COLUMN title TO headline")
    columns = inspect(engine).get_columns("sa_migrated")
    assert [c["name"] for c in columns] == ["id", "embedding", "headline", "rank"]
    rank = columns[3]
    assert rank["nullable"] is False
    assert rank["default"] == "7"
    # The application's model after the migration, read through the ORM.
    from pgvector.sqlalchemy import Vector
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

    class Base(DeclarativeBase):
        pass

    class Migrated(Base):
        __tablename__ = "sa_migrated"
        id: Mapped[int] = mapped_column(primary_key=True)
        embedding = mapped_column(Vector(2))
        headline: Mapped[str | None]
        rank: Mapped[int]

    with Session(engine) as session:
        rows = session.scalars(sqlalchemy.select(Migrated).order_by(Migrated.id)).all()
        assert [(r.id, r.headline, r.rank) for r in rows] == [(1, "a", 7), (2, "b", 7)]
        session.add(Migrated(id=3, embedding=[3, 3], headline="c", rank=8))
        session.commit()
    with engine.connect() as conn:
        assert conn.execute(
            text("SELECT rank FROM sa_migrated WHERE id = 3")
        ).scalar_one() == 8
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute("ALTER TABLE sa_migrated ADD COLUMN note text NOT NULL")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="ALTER COLUMN"):
            conn.execute("ALTER TABLE sa_migrated ALTER COLUMN rank TYPE bigint")
        with pytest.raises(psycopg.errors.DuplicateColumn):
            conn.execute("ALTER TABLE sa_migrated ADD COLUMN headline text")
    assert [c["name"] for c in inspect(engine).get_columns("sa_migrated")] == [
        "id",
        "embedding",
        "headline",
        "rank",
    ]


def test_table_reflected_with_autoload(engine, open_dsn):
    """`Table(name, MetaData(), autoload_with=engine)` reflects a pgvector
    table whole (its reflection asks `current_setting(
    'default_table_access_method')`): the columns in order, the key, the
    vector as pgvector-python's `Vector` of its dimension; a query built
    on the reflected table orders by `l2_distance` (nearest by hand:
    [1,1,1] is 0 away from itself, [1,2,3] √5)."""
    from pgvector.sqlalchemy import Vector
    from sqlalchemy import MetaData, Table, select

    with psycopg.connect(open_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS sa_reflected")
        conn.execute("CREATE TABLE sa_reflected (id bigint PRIMARY KEY, note text, embedding vector(3))")
        conn.execute("INSERT INTO sa_reflected VALUES (1, 'a', '[1,2,3]'), (2, 'b', '[4,5,6]'), (3, 'c', '[1,1,1]')")
    table = Table("sa_reflected", MetaData(), autoload_with=engine)
    assert [c.name for c in table.columns] == ["id", "note", "embedding"]
    assert [c.name for c in table.primary_key] == ["id"]
    assert isinstance(table.c.embedding.type, Vector)
    assert table.c.embedding.type.dim == 3
    with engine.connect() as conn:
        rows = conn.execute(
            select(table.c.id).order_by(table.c.embedding.l2_distance([1, 1, 1])).limit(2)
        ).all()
    assert [r.id for r in rows] == [3, 1]
