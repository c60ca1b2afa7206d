"""Alembic's autogenerate against the Postgres front end: tables created
by SQLAlchemy 2 metadata (`create_all`) are reflected back by
`compare_metadata` with no difference, so a migration generated against
Valori is empty when the schema is unchanged; a column and an index added
to the metadata afterwards are reported as exactly those two operations.

The metadata declares pgvector's HNSW index on the vector column, as a
pgvector application does. Without it, autogenerate would report one
difference, `remove_index` of `<table>_<column>_idx`: every vector column
of a Valori table has its HNSW graph from the start, and the catalog lists
it under the name Postgres gives an unnamed index (docs/pgvector.md
"Introspection").
"""

import os

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
)

TABLES = ["alembic_items", "alembic_categories"]


@pytest.fixture
def engine(open_dsn):
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    url = "postgresql+psycopg://tester@{}:{}/valori".format(
        os.environ["VALORI_PG_HOST"], os.environ["VALORI_PG_PORT"]
    )
    e = create_engine(url)
    yield e
    e.dispose()
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def schema():
    """Two tables: categories, and items with a vector, a text, an integer
    key into categories, a unique constraint over two columns, a btree
    index on one column and pgvector's HNSW index on the vector."""
    metadata = MetaData()
    categories = Table(
        "alembic_categories",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", Text, nullable=False),
    )
    items = Table(
        "alembic_items",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("embedding", Vector(3)),
        Column("content", Text, nullable=False),
        Column("category_id", Integer, ForeignKey("alembic_categories.id")),
        UniqueConstraint("content", "category_id", name="alembic_items_content_category_key"),
        Index("alembic_items_category_idx", "category_id"),
        Index(
            "alembic_items_embedding_idx",
            "embedding",
            postgresql_using="hnsw",
            postgresql_ops={"embedding": "vector_l2_ops"},
        ),
    )
    return metadata, categories, items


def diff(engine, metadata):
    """Alembic's differences between the database and `metadata`, for
    the tables of this test only."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, type_, parent: type_ != "table" or name in TABLES,
            },
        )
        return compare_metadata(context, metadata)


def test_create_all_then_autogenerate_finds_nothing(engine):
    """After create_all, the reflected schema equals the metadata: same
    tables, columns (types, nullability, vector dimension), primary and
    foreign keys, the unique constraint and the index."""
    metadata, _, _ = schema()
    metadata.create_all(engine)
    assert diff(engine, metadata) == []


def test_autogenerate_reports_an_added_column_and_index(engine):
    """A column and an index added to the metadata after create_all are
    the only differences autogenerate reports: add_column for the column,
    add_index for the index, nothing else."""
    metadata, _, items = schema()
    metadata.create_all(engine)
    items.append_column(Column("score", Integer, nullable=True))
    Index("alembic_items_score_idx", items.c.score)
    found = diff(engine, metadata)
    kinds = sorted(d[0] for d in found)
    assert kinds == ["add_column", "add_index"], found
    add_column = next(d for d in found if d[0] == "add_column")
    assert add_column[2] == "alembic_items"
    assert add_column[3].name == "score"
    add_index = next(d for d in found if d[0] == "add_index")
    assert add_index[1].name == "alembic_items_score_idx"
    assert [c.name for c in add_index[1].columns] == ["score"]
