"""LlamaIndex's and LangChain's Postgres vector stores, unchanged, against
the Postgres front end: only the connection settings name Valori.

LlamaIndex's `PGVectorStore` (SQLAlchemy over psycopg2 for its sync
calls, asyncpg for its async ones) creates its own table and indexes,
adds nodes with metadata, answers similarity queries with and without
metadata filters, deletes nodes, and opens again on the existing table.
Each answer is checked against an independent computation: numpy's
cosine distances over the same embeddings, and the nodes whose metadata
match a filter, selected here in Python. A second connection (plain
psycopg) reads the rows back.

LangChain's `PGVector` creates its two tables (a foreign key with `ON
DELETE CASCADE` between them) under its advisory lock, adds texts,
answers similarity queries with and without metadata filters, deletes
by id and deletes a collection with its embeddings, each answer checked
against numpy and read back over psycopg. Its default `embedding VECTOR`
column (no dimension) is accepted: the first row gives it its dimension.
The metadata filters it compiles (`jsonb_path_match` over `CAST(… AS
JSONPATH)` and `CAST(… AS JSONB)`, `->>` with `IN`, `jsonb_exists`) are
checked on a table made here."""

import json
import os
import uuid

import numpy as np
import psycopg
import pytest
import sqlalchemy
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_postgres import PGVector
from pgvector.psycopg import register_vector
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from llama_index.vector_stores.postgres import PGVectorStore

DIM = 6
COUNT = 24


def _embeddings():
    # Fixed, distinct vectors with non-negative components, so no two
    # cosine distances to the query tie.
    rng = np.random.default_rng(14)
    return np.round(rng.uniform(0.0, 4.0, size=(COUNT, DIM)), 3)


def _nodes(embeddings):
    nodes = []
    for i, e in enumerate(embeddings):
        nodes.append(
            TextNode(
                id_=f"node-{i}",
                text=f"text number {i}",
                metadata={
                    "i": i,
                    "kind": "even" if i % 2 == 0 else "odd",
                    "shelf": ["a", "b", "c"][i % 3],
                },
                embedding=[float(x) for x in e],
                # Nodes 0..5 come from document doc-a, the others from doc-b.
                relationships={
                    NodeRelationship.SOURCE: RelatedNodeInfo(
                        node_id="doc-a" if i < 6 else "doc-b"
                    )
                },
            )
        )
    return nodes


def _cosine_order(embeddings, query, rows):
    """The rows (indexes into embeddings) nearest `query` first, with their
    cosine distances, computed with numpy."""
    q = np.asarray(query, dtype=np.float64)
    distances = {
        r: 1.0 - float(embeddings[r] @ q / (np.linalg.norm(embeddings[r]) * np.linalg.norm(q)))
        for r in rows
    }
    order = sorted(rows, key=lambda r: distances[r])
    return order, distances


def _store(table):
    return PGVectorStore.from_params(
        host=os.environ["VALORI_PG_HOST"],
        port=os.environ["VALORI_PG_PORT"],
        database="valori",
        user="tester",
        password="unused",
        table_name=table,
        embed_dim=DIM,
    )


@pytest.fixture
def llama_table(open_dsn):
    name = "li_" + uuid.uuid4().hex[:8]
    yield name
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS data_{name}")


def test_llamaindex_pgvectorstore_end_to_end(llama_table, open_dsn):
    """PGVectorStore creates data_<name> itself; the nodes it adds land as
    rows (read back over psycopg); the top-k of a query are numpy's
    nearest by cosine distance, in order, with similarity 1 - distance;
    metadata filters (equality on text, >= on a number, IN, and an OR of
    two) return exactly the nearest of the matching nodes; deleting nodes
    by id and by source document removes exactly those rows; a store
    opened again on the table answers the same; the async (asyncpg) path
    answers as the sync one."""
    embeddings = _embeddings()
    nodes = _nodes(embeddings)
    store = _store(llama_table)
    added = store.add(nodes)
    assert added == [n.node_id for n in nodes]

    # The rows, read over a second connection.
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        register_vector(conn)
        rows = conn.execute(
            f"SELECT node_id, text, metadata_ ->> 'kind', embedding "
            f"FROM data_{llama_table} ORDER BY id"
        ).fetchall()
    assert [r[0] for r in rows] == [n.node_id for n in nodes]
    assert [r[1] for r in rows] == [n.text for n in nodes]
    assert [r[2] for r in rows] == [n.metadata["kind"] for n in nodes]
    stored = np.array([r[3] for r in rows], dtype=np.float64)
    # Q16.16 keeps each component within 2^-16.
    assert np.abs(stored - embeddings).max() < 2.0**-15

    query = [1.0, 3.5, 0.25, 2.0, 0.5, 1.5]
    everyone = list(range(COUNT))

    def check(result, rows, k):
        order, distances = _cosine_order(embeddings, query, rows)
        assert result.ids == [f"node-{r}" for r in order[:k]]
        assert [n.node_id for n in result.nodes] == result.ids
        expected = [1.0 - distances[r] for r in order[:k]]
        assert np.allclose(result.similarities, expected, atol=1e-4)

    result = store.query(VectorStoreQuery(query_embedding=query, similarity_top_k=5))
    check(result, everyone, 5)
    assert result.nodes[0].metadata["i"] == int(result.ids[0].split("-")[1])

    odd = MetadataFilters(filters=[MetadataFilter(key="kind", value="odd")])
    result = store.query(
        VectorStoreQuery(query_embedding=query, similarity_top_k=4, filters=odd)
    )
    check(result, [i for i in everyone if i % 2 == 1], 4)

    big = MetadataFilters(
        filters=[MetadataFilter(key="i", value=15, operator=FilterOperator.GTE)]
    )
    result = store.query(
        VectorStoreQuery(query_embedding=query, similarity_top_k=20, filters=big)
    )
    # Fewer match than asked for: every matching node, nearest first.
    check(result, [i for i in everyone if i >= 15], 20)
    assert len(result.ids) == COUNT - 15

    shelves = MetadataFilters(
        filters=[MetadataFilter(key="shelf", value=["a", "c"], operator=FilterOperator.IN)]
    )
    result = store.query(
        VectorStoreQuery(query_embedding=query, similarity_top_k=6, filters=shelves)
    )
    check(result, [i for i in everyone if i % 3 != 1], 6)

    either = MetadataFilters(
        filters=[
            MetadataFilter(key="i", value=3, operator=FilterOperator.LT),
            MetadataFilter(key="kind", value="odd"),
        ],
        condition=FilterCondition.OR,
    )
    result = store.query(
        VectorStoreQuery(query_embedding=query, similarity_top_k=8, filters=either)
    )
    check(result, [i for i in everyone if i < 3 or i % 2 == 1], 8)

    # Deletes: two nodes by id, then every node of doc-a (0..5).
    store.delete_nodes(node_ids=["node-7", "node-8"])
    store.delete(ref_doc_id="doc-a")
    left = [i for i in everyone if i >= 6 and i not in (7, 8)]
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                f"SELECT node_id FROM data_{llama_table} ORDER BY id"
            ).fetchall()
        ]
    assert ids == [f"node-{i}" for i in left]
    check(store.query(VectorStoreQuery(query_embedding=query, similarity_top_k=5)), left, 5)

    # Opened again on the existing table: it is not created twice, the
    # rows are there.
    again = _store(llama_table)
    check(again.query(VectorStoreQuery(query_embedding=query, similarity_top_k=5)), left, 5)

    import asyncio

    async def through_asyncpg():
        try:
            return await again.aquery(
                VectorStoreQuery(query_embedding=query, similarity_top_k=4, filters=odd)
            )
        finally:
            await again.close()

    check(asyncio.run(through_asyncpg()), [i for i in left if i % 2 == 1], 4)


def _lc_cosine(emb, texts, query):
    """Cosine distances of each text's embedding to the query's, with
    numpy: the order LangChain's default strategy must give."""
    q = np.asarray(emb.embed_query(query), dtype=np.float64)
    out = {}
    for t, e in zip(texts, emb.embed_documents(texts)):
        e = np.asarray(e, dtype=np.float64)
        out[t] = 1.0 - float(e @ q / (np.linalg.norm(e) * np.linalg.norm(q)))
    return out


def test_langchain_pgvector_end_to_end(open_dsn):
    """LangChain's PGVector, as written: it takes its advisory lock, runs
    `CREATE EXTENSION IF NOT EXISTS vector`, creates langchain_pg_collection
    and langchain_pg_embedding (a foreign key with ON DELETE CASCADE) in
    one transaction; add_texts upserts rows with metadata; the top-k of a
    query are numpy's nearest by cosine distance, in order, with their
    distances; a metadata filter returns exactly the nearest matching
    texts; delete by ids removes exactly those rows; delete_collection
    deletes the collection row and, through the foreign key, its
    embeddings, leaving another collection's. Each step is read back over
    a second connection. Its default `embedding VECTOR` (no dimension)
    takes the dimension of the first row written, then refuses another
    (LangChain fixes its table classes once per process, so the store is
    made with embedding_length=8 and the dimensionless column is tried in
    its own statements)."""
    url = "postgresql+psycopg://tester@{}:{}/valori".format(
        os.environ["VALORI_PG_HOST"], os.environ["VALORI_PG_PORT"]
    )
    emb = DeterministicFakeEmbedding(size=8)
    texts = [f"text {i}" for i in range(12)]
    metas = [{"i": i, "kind": "even" if i % 2 == 0 else "odd"} for i in range(12)]
    ids = [f"id-{i}" for i in range(12)]
    store = PGVector(
        embeddings=emb, collection_name="lc", connection=url, embedding_length=8, use_jsonb=True
    )
    other = PGVector(
        embeddings=emb, collection_name="lc_other", connection=url, embedding_length=8, use_jsonb=True
    )
    try:
        assert store.add_texts(texts, metadatas=metas, ids=ids) == ids
        other.add_texts(["kept"], ids=["other-0"])
        # Adding the same ids again updates them in place (ON CONFLICT).
        store.add_texts(texts[:2], metadatas=metas[:2], ids=ids[:2])
        with psycopg.connect(open_dsn, autocommit=True) as conn:
            got = conn.execute(
                "SELECT e.id, e.document, e.cmetadata ->> 'kind' FROM langchain_pg_embedding e "
                "JOIN langchain_pg_collection c ON c.uuid = e.collection_id "
                "WHERE c.name = 'lc' ORDER BY e.document"
            ).fetchall()
        assert sorted(got) == sorted(zip(ids, texts, [m["kind"] for m in metas]))

        distances = _lc_cosine(emb, texts, "query")
        nearest = sorted(texts, key=lambda t: distances[t])
        found = store.similarity_search_with_score("query", k=4)
        assert [d.page_content for d, _ in found] == nearest[:4]
        for d, score in found:
            # Scores are computed on the stored Q16.16 values.
            assert abs(score - distances[d.page_content]) < 1e-3
            assert d.metadata == metas[texts.index(d.page_content)]

        odd = [t for t in nearest if int(t.split()[1]) % 2 == 1]
        found = store.similarity_search("query", k=3, filter={"kind": {"$eq": "odd"}})
        assert [d.page_content for d in found] == odd[:3]
        small = [t for t in nearest if int(t.split()[1]) < 5]
        found = store.similarity_search("query", k=3, filter={"i": {"$lt": 5}})
        assert [d.page_content for d in found] == small[:3]

        store.delete(ids=["id-0", "id-1"])
        left = [t for t in nearest if t not in ("text 0", "text 1")]
        found = store.similarity_search("query", k=20)
        assert [d.page_content for d in found] == left

        store.delete_collection()
        with psycopg.connect(open_dsn, autocommit=True) as conn:
            assert conn.execute(
                "SELECT name FROM langchain_pg_collection ORDER BY name"
            ).fetchall() == [("lc_other",)]
            # The cascade took lc's embeddings and left lc_other's.
            assert conn.execute(
                "SELECT id FROM langchain_pg_embedding ORDER BY id"
            ).fetchall() == [("other-0",)]
            # The key, as Postgres lists it.
            assert conn.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE contype = 'f' AND conrelid = 'langchain_pg_embedding'::regclass"
            ).fetchall() == [
                ("FOREIGN KEY (collection_id) REFERENCES langchain_pg_collection(uuid) ON DELETE CASCADE",)
            ]
    finally:
        with psycopg.connect(open_dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS langchain_pg_embedding, langchain_pg_collection")

    with psycopg.connect(open_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS lc_untyped")
        conn.execute(
            "CREATE TABLE lc_untyped (id VARCHAR NOT NULL, embedding VECTOR, "
            "document VARCHAR, cmetadata JSONB, PRIMARY KEY (id))"
        )
        register_vector(conn)
        vectors = DeterministicFakeEmbedding(size=8).embed_documents(["a", "b"])
        conn.execute(
            "INSERT INTO lc_untyped (id, embedding, document) VALUES (%s, %s, %s), (%s, %s, %s)",
            ("a", np.array(vectors[0]), "a", "b", np.array(vectors[1]), "b"),
        )
        got = conn.execute(
            "SELECT id, embedding FROM lc_untyped ORDER BY embedding <-> %s LIMIT 1",
            (np.array(vectors[1]),),
        ).fetchall()
        assert got[0][0] == "b"
        # Q16.16 keeps each component within 2^-16.
        assert np.abs(np.array(got[0][1]) - np.array(vectors[1])).max() < 2.0**-15
        assert conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relname = 'lc_untyped' AND a.attname = 'embedding'"
        ).fetchone() == ("vector(8)",)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="expected 8 dimensions"):
            conn.execute(
                "INSERT INTO lc_untyped (id, embedding) VALUES ('c', '[1,2,3]')"
            )
        conn.execute("DROP TABLE lc_untyped")


def test_langchain_filter_forms(open_dsn):
    """The SQL LangChain's PGVector compiles for its filter dicts, run on a
    jsonb column: `jsonb_path_match(m, CAST('$.f <op> $value' AS JSONPATH),
    CAST('{"value": v}' AS JSONB))` for $eq/$ne/$lt/$lte/$gt/$gte (and
    two of them for $between), `m ->> 'f' IN (…)` for $in, `jsonb_exists`
    for $exists. Each returns exactly the rows whose metadata match, as
    selected here in Python; a path outside the supported jsonpath subset
    is an error naming it."""
    metas = [
        {"n": 1, "kind": "a"},
        {"n": 2, "kind": "b"},
        {"n": 3, "kind": "a", "extra": True},
        {"n": 4.5, "kind": "c"},
        {"n": "5", "kind": "b"},
        {"kind": "a"},
    ]
    table = "lcf_" + uuid.uuid4().hex[:8]
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id int PRIMARY KEY, cmetadata jsonb, embedding vector(2))"
        )
        try:
            with conn.cursor() as cur:
                for i, m in enumerate(metas):
                    cur.execute(
                        f"INSERT INTO {table} VALUES (%s, %s, '[1,1]')",
                        (i, json.dumps(m)),
                    )

            def ids(where, params):
                rows = conn.execute(
                    f"SELECT id FROM {table} WHERE {where} ORDER BY id", params
                ).fetchall()
                return [r[0] for r in rows]

            def path_match(field, op, value):
                return ids(
                    "jsonb_path_match(cmetadata, CAST(%s AS JSONPATH), CAST(%s AS JSONB))",
                    (f"$.{field} {op} $value", json.dumps({"value": value})),
                )

            def expect(pred):
                return [i for i, m in enumerate(metas) if pred(m)]

            def num(m):
                # jsonpath compares numbers with numbers only.
                v = m.get("n")
                return v if isinstance(v, (int, float)) else None

            assert path_match("kind", "==", "a") == expect(lambda m: m["kind"] == "a")
            assert path_match("kind", "!=", "a") == expect(lambda m: m["kind"] != "a")
            assert path_match("n", "==", 2) == expect(lambda m: num(m) == 2)
            assert path_match("n", "<", 3) == expect(lambda m: num(m) is not None and num(m) < 3)
            assert path_match("n", "<=", 3) == expect(lambda m: num(m) is not None and num(m) <= 3)
            assert path_match("n", ">", 3) == expect(lambda m: num(m) is not None and num(m) > 3)
            assert path_match("n", ">=", 3) == expect(lambda m: num(m) is not None and num(m) >= 3)
            between = ids(
                "jsonb_path_match(cmetadata, CAST(%s AS JSONPATH), CAST(%s AS JSONB)) AND "
                "jsonb_path_match(cmetadata, CAST(%s AS JSONPATH), CAST(%s AS JSONB))",
                ("$.n >= $value", '{"value": 2}', "$.n <= $value", '{"value": 4.5}'),
            )
            assert between == expect(lambda m: num(m) is not None and 2 <= num(m) <= 4.5)
            assert ids("(cmetadata ->> %s) IN (%s, %s)", ("n", "1", "5")) == expect(
                lambda m: str(m.get("n")) in ("1", "5")
            )
            assert ids("jsonb_exists(cmetadata, %s)", ("extra",)) == expect(lambda m: "extra" in m)
            assert ids("NOT jsonb_exists(cmetadata, %s)", ("n",)) == expect(lambda m: "n" not in m)
            with pytest.raises(psycopg.Error, match="jsonpath"):
                path_match("n[0]", "==", 1)
        finally:
            conn.execute(f"DROP TABLE {table}")
