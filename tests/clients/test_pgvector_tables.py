"""Tables as pgvector users declare them, through unchanged clients:
pgvector-python's README flow with psycopg 3 (text and binary) and
asyncpg, every scalar type with Python values in and out, filters on
declared columns, refused writes that leave the state hash unchanged, and
the rows read back over REST. Expected values are computed here."""

import asyncio
import datetime
import decimal
import json
import math
import os
import urllib.request
import uuid

import asyncpg
import numpy as np
import psycopg
import pytest
from pgvector.asyncpg import register_vector as register_vector_asyncpg
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb


def rest(path, body=None):
    url = "http://{}:{}{}".format(
        os.environ["VALORI_PG_HOST"], os.environ["VALORI_REST_PORT"], path
    )
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def state_hash():
    return rest("/v1/proof/state")["state_hash"]


def test_readme_flow(open_dsn):
    """pgvector-python's README: CREATE EXTENSION, a bigserial key and an
    `embedding` column, inserts of numpy arrays, the nearest neighbours by
    L2, cosine and inner product; the same rows in binary format and over
    REST."""
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS readme_items")
        conn.execute(
            "CREATE TABLE readme_items (id bigserial PRIMARY KEY, embedding vector(3))"
        )
        vectors = [np.array([1, 2, 3]), np.array([4, 5, 6]), np.array([1, 1, 1])]
        for v in vectors:
            conn.execute("INSERT INTO readme_items (embedding) VALUES (%s)", (v,))
        query = np.array([3, 1, 2])

        def order(distance):
            return [
                i + 1
                for i in sorted(range(len(vectors)), key=lambda i: (distance(vectors[i]), i))
            ]

        l2 = order(lambda v: np.linalg.norm(v - query))
        cos = order(lambda v: 1 - v @ query / np.linalg.norm(v) / np.linalg.norm(query))
        ip = order(lambda v: -(v @ query))
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                for op, want in (("<->", l2), ("<=>", cos), ("<#>", ip)):
                    cur.execute(
                        f"SELECT id, embedding FROM readme_items ORDER BY embedding {op} %s LIMIT 5",
                        (query,),
                    )
                    rows = cur.fetchall()
                    assert [r[0] for r in rows] == want, op
                    for id_, embedding in rows:
                        assert np.array_equal(embedding.to_numpy(), vectors[id_ - 1])
        (d,) = conn.execute(
            "SELECT embedding <-> %s FROM readme_items WHERE id = 1", (query,)
        ).fetchone()
        assert math.isclose(d, math.sqrt(6), rel_tol=1e-6)
    # A second front end sees the same rows.
    answer = rest("/v1/sql", {"query": "SELECT id FROM readme_items ORDER BY id"})
    assert [r[0] for r in answer["rows"]] == [1, 2, 3]


def test_declared_types_round_trip(open_dsn):
    """Every declared type written from Python values and read back as
    the same Python values, in text and binary format; NULLs; computed
    defaults; filters on declared columns, with and without a search."""
    day = datetime.date(2024, 2, 29)
    at = datetime.datetime(2024, 3, 1, 12, 34, 56, 500000)
    at_tz = datetime.datetime(2024, 3, 1, 12, 34, 56, tzinfo=datetime.timezone.utc)
    uid = uuid.UUID("0b8a7a4e-3c6e-4c52-9d4a-2f0a5b6c7d8e")
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS typed_docs")
        conn.execute(
            """CREATE TABLE typed_docs (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                embedding vector(2) NOT NULL,
                content text NOT NULL,
                title varchar(20),
                category_id integer,
                rank smallint,
                big bigint,
                score double precision,
                ratio real,
                price numeric(10, 2),
                active boolean DEFAULT true,
                day date,
                at timestamp,
                at_tz timestamptz,
                created_at timestamptz DEFAULT now(),
                source jsonb,
                blob bytea,
                labels text[],
                counts integer[]
            )"""
        )
        conn.execute(
            """INSERT INTO typed_docs (id, embedding, content, title, category_id, rank, big,
                score, ratio, price, day, at, at_tz, source, blob, labels, counts)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                uid, np.array([1.0, 0.0]), "first", "Title", 123, 7, 2**40,
                0.5, 1.25, decimal.Decimal("12.50"), day, at, at_tz,
                Jsonb({"b": 1, "a": [1, 2]}), b"\x00\xff", ["x", "y z"], [1, 2],
            ),
        )
        conn.execute(
            "INSERT INTO typed_docs (embedding, content) VALUES (%s, %s)",
            (np.array([0.0, 1.0]), "second"),
        )
        want = (
            uid, "first", "Title", 123, 7, 2**40, 0.5, 1.25, decimal.Decimal("12.5"),
            True, day, at, at_tz, {"a": [1, 2], "b": 1}, b"\x00\xff", ["x", "y z"], [1, 2],
        )
        columns = ("id, content, title, category_id, rank, big, score, ratio, price, active, "
                   "day, at, at_tz, source, blob, labels, counts")
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute(f"SELECT {columns} FROM typed_docs WHERE content = 'first'")
                row = cur.fetchone()
                assert row == want, binary
                cur.execute(
                    "SELECT id, title, category_id, active, created_at FROM typed_docs WHERE content = %s",
                    ("second",),
                )
                generated, title, category, active, created = cur.fetchone()
                assert isinstance(generated, uuid.UUID) and generated.version == 4
                assert (title, category, active) == (None, None, True)
                now = datetime.datetime.now(datetime.timezone.utc)
                assert abs((now - created).total_seconds()) < 600
        rows = conn.execute(
            "SELECT content FROM typed_docs WHERE category_id = %s ORDER BY embedding <-> %s LIMIT 5",
            (123, np.array([0.0, 1.0])),
        ).fetchall()
        assert rows == [("first",)]
        rows = conn.execute(
            "SELECT content FROM typed_docs WHERE category_id IS NULL OR price > %s ORDER BY content",
            (decimal.Decimal("10"),),
        ).fetchall()
        assert rows == [("first",), ("second",)]


def test_vector_functions_and_aggregates(open_dsn):
    """pgvector's L1 operator `<+>` with a vector parameter, AVG and SUM of
    vectors per category and vector arithmetic, read back as pgvector
    Vectors through register_vector in text and binary format; `::real[]`
    of a vector and a declared real[] column read back as lists of floats;
    the expected values are computed here with numpy. A dimension mismatch
    is an error and the state hash is unchanged."""
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS fn_items")
        conn.execute(
            "CREATE TABLE fn_items (id bigserial PRIMARY KEY, category_id int, embedding vector(3))"
        )
        rows = [(1, [1, 2, 3]), (1, [4, 5, 6]), (2, [0, 0, 1]), (2, [-1, 0.5, 2])]
        for category, v in rows:
            conn.execute(
                "INSERT INTO fn_items (category_id, embedding) VALUES (%s, %s)",
                (category, np.array(v, dtype=np.float32)),
            )
        vectors = [np.array(v, dtype=np.float64) for _, v in rows]
        query = np.array([3, 1, 2], dtype=np.float32)
        l1 = [float(np.abs(v - query).sum()) for v in vectors]
        nearest = sorted(range(len(vectors)), key=lambda i: (l1[i], i))
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute(
                    "SELECT id, embedding <+> %s FROM fn_items ORDER BY embedding <+> %s LIMIT 4",
                    (query, query),
                )
                got = cur.fetchall()
                assert [r[0] for r in got] == [i + 1 for i in nearest]
                for id_, d in got:
                    assert math.isclose(d, l1[id_ - 1], rel_tol=1e-9), (id_, d)
                cur.execute(
                    "SELECT category_id, AVG(embedding), SUM(embedding) FROM fn_items "
                    "GROUP BY category_id ORDER BY category_id"
                )
                for category, avg, total in cur.fetchall():
                    members = [v for (c, _), v in zip(rows, vectors) if c == category]
                    assert np.allclose(avg.to_numpy(), np.mean(members, axis=0), atol=1e-6)
                    assert np.allclose(total.to_numpy(), np.sum(members, axis=0), atol=1e-6)
                (total,) = cur.execute(
                    "SELECT embedding + %s FROM fn_items WHERE id = 1", (query,)
                ).fetchone()
                assert np.allclose(total.to_numpy(), vectors[0] + query)
                # A vector cast to real[] and a declared real[] column come
                # back as Python lists of floats, not as vectors.
                (arr,) = cur.execute(
                    "SELECT embedding::real[] FROM fn_items WHERE id = 4"
                ).fetchone()
                assert arr == [-1.0, 0.5, 2.0]
                cur.execute("DROP TABLE IF EXISTS fn_arrays")
                cur.execute("CREATE TABLE fn_arrays (id int PRIMARY KEY, a real[])")
                cur.execute("INSERT INTO fn_arrays VALUES (1, %s)", ([1.5, 2.0],))
                assert cur.execute("SELECT a FROM fn_arrays").fetchone() == ([1.5, 2.0],)
        before = state_hash()
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="different vector dimensions 3 and 2"):
            conn.execute("SELECT embedding <+> %s FROM fn_items", (np.array([1.0, 2.0]),))
        assert state_hash() == before


def test_refused_writes_change_nothing(open_dsn):
    """A duplicate key, NULL in a NOT NULL column, a value of the wrong
    type and a wrong dimension are refused with Postgres's SQLSTATEs; the
    state hash is unchanged and the table still holds its one row."""
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS strict_docs")
        conn.execute(
            "CREATE TABLE strict_docs (id int PRIMARY KEY, embedding vector(2), name text NOT NULL)"
        )
        conn.execute(
            "INSERT INTO strict_docs VALUES (%s, %s, %s)", (1, np.array([1.0, 1.0]), "one")
        )
        before = state_hash()
        cases = [
            ("INSERT INTO strict_docs VALUES (1, '[2,2]', 'again')", psycopg.errors.UniqueViolation),
            ("INSERT INTO strict_docs (id, embedding) VALUES (2, '[2,2]')", psycopg.errors.NotNullViolation),
            ("INSERT INTO strict_docs VALUES ('two', '[2,2]', 'x')", psycopg.errors.InvalidTextRepresentation),
            ("INSERT INTO strict_docs VALUES (2, '[2,2,2]', 'x')", psycopg.DataError),
            ("INSERT INTO strict_docs VALUES (99999999999, '[2,2]', 'x')", psycopg.errors.NumericValueOutOfRange),
            ("CREATE TABLE two_vectors (a vector(2), b vector(2))", psycopg.errors.FeatureNotSupported),
        ]
        for sql, error in cases:
            with pytest.raises(error):
                conn.execute(sql)
            assert state_hash() == before, sql
        assert conn.execute("SELECT id, name FROM strict_docs").fetchall() == [(1, "one")]


def test_asyncpg_binary(open_dsn):
    """asyncpg reads every result in binary: vectors with
    register_vector, uuid, numeric, timestamps and text arrays come back as
    Python values."""

    async def main():
        conn = await asyncpg.connect(
            host=os.environ["VALORI_PG_HOST"],
            port=int(os.environ["VALORI_PG_PORT"]),
            user="tester",
            database="valori",
        )
        try:
            await register_vector_asyncpg(conn)
            await conn.execute("DROP TABLE IF EXISTS apg_docs")
            await conn.execute(
                "CREATE TABLE apg_docs (id bigserial PRIMARY KEY, embedding vector(2), "
                "uid uuid, price numeric, at timestamptz, labels text[])"
            )
            uid = uuid.UUID("12345678-1234-4234-8234-123456789abc")
            at = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
            await conn.execute(
                "INSERT INTO apg_docs (embedding, uid, price, at, labels) VALUES ($1, $2, $3, $4, $5)",
                np.array([3.0, 4.0]), uid, decimal.Decimal("-1234.5678"), at, ["a", "b"],
            )
            rows = await conn.fetch(
                "SELECT id, embedding, uid, price, at, labels FROM apg_docs "
                "ORDER BY embedding <-> $1 LIMIT 3",
                np.array([3.0, 4.0]),
            )
            assert len(rows) == 1
            row = rows[0]
            assert row["id"] == 1
            embedding = row["embedding"]
            embedding = embedding.to_numpy() if hasattr(embedding, "to_numpy") else embedding
            assert np.array_equal(embedding, np.array([3.0, 4.0]))
            assert row["uid"] == uid
            assert row["price"] == decimal.Decimal("-1234.5678")
            assert row["at"] == at
            assert row["labels"] == ["a", "b"]
        finally:
            await conn.close()

    asyncio.run(main())


def test_json_metadata_filters(open_dsn):
    """Metadata filters as LlamaIndex and LangChain write them, through
    psycopg with its own Jsonb adapter: `->>` compares text, `->` comes
    back as jsonb (psycopg loads it into Python values), `@>` tests
    containment, also as the filter of a nearest-neighbour search. The
    expected rows are read off the inserted metadata by hand."""
    rows = [
        (1, {"doc": "x", "n": 1}, [1, 0]),
        (2, {"doc": "y", "tags": ["a", "b"]}, [0, 1]),
        (3, {"doc": "x", "tags": ["b"]}, [3, 3]),
    ]
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS meta_docs")
        conn.execute("CREATE TABLE meta_docs (id bigint PRIMARY KEY, meta jsonb, embedding vector(2))")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO meta_docs VALUES (%s, %s, %s)",
                [(i, Jsonb(m), np.array(v, dtype=np.float32)) for i, m, v in rows],
            )
        got = conn.execute(
            "SELECT id, meta ->> 'doc', meta -> 'tags' FROM meta_docs ORDER BY id"
        ).fetchall()
        assert got == [(i, m["doc"], m.get("tags")) for i, m, _ in rows]
        x = conn.execute(
            "SELECT id FROM meta_docs WHERE meta ->> %s = %s ORDER BY id", ("doc", "x")
        ).fetchall()
        assert [r[0] for r in x] == [i for i, m, _ in rows if m["doc"] == "x"]
        tagged = conn.execute(
            "SELECT id FROM meta_docs WHERE meta @> %s ORDER BY id", (Jsonb({"tags": ["b"]}),)
        ).fetchall()
        assert [r[0] for r in tagged] == [i for i, m, _ in rows if "b" in m.get("tags", [])]
        q = np.array([0, 0], dtype=np.float32)
        near = conn.execute(
            "SELECT id FROM meta_docs WHERE meta ->> 'doc' = 'x' ORDER BY embedding <-> %s LIMIT 5",
            (q,),
        ).fetchall()
        want = sorted(
            (i for i, m, _ in rows if m["doc"] == "x"),
            key=lambda i: math.dist(rows[i - 1][2], q),
        )
        assert [r[0] for r in near] == want


def test_copy_binary_text_and_csv(open_dsn):
    """COPY through psycopg 3's copy() with pgvector-python's adapter:
    pgvector's README bulk load (FORMAT BINARY, set_types(["vector"]),
    write_row) and a binary load of several columns; COPY ... TO STDOUT read
    back row by row in binary (read_row with set_types) and text, and in
    csv with HEADER; each compared with the inputs and with a SELECT. A
    malformed binary stream is refused with 22P04 and changes nothing."""
    embeddings = [
        np.array([1, 2, 3], dtype=np.float32),
        np.array([0.5, -1.25, 8], dtype=np.float32),
        np.array([0, 0, 0.125], dtype=np.float32),
    ]
    contents = ["plain", 'tab\there, "q" \\ back', None]
    categories = [10, None, 30]
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS copy_items")
        conn.execute(
            "CREATE TABLE copy_items (id bigserial PRIMARY KEY, content text, "
            "category_id int, embedding vector(3))"
        )
        cur = conn.cursor()
        # pgvector's README, as written there.
        with cur.copy(
            "COPY copy_items (embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["vector"])
            for embedding in embeddings:
                copy.write_row([embedding])
        assert cur.rowcount == 3
        with cur.copy(
            "COPY copy_items (id, content, category_id, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "int4", "vector"])
            for i, (c, k, e) in enumerate(zip(contents, categories, embeddings)):
                copy.write_row([100 + i, c, k, e])
        assert cur.rowcount == 3

        expected = [(i + 1, None, None, e) for i, e in enumerate(embeddings)] + [
            (100 + i, c, k, e)
            for i, (c, k, e) in enumerate(zip(contents, categories, embeddings))
        ]

        def same(rows):
            assert len(rows) == len(expected)
            for got, want in zip(rows, expected):
                assert got[:3] == want[:3]
                vector = got[3]
                # pgvector-python's binary loader gives its Vector class.
                if hasattr(vector, "to_numpy"):
                    vector = vector.to_numpy()
                assert np.array_equal(np.asarray(vector, dtype=np.float32), want[3])

        # Another path: a SELECT, in binary and text.
        same(conn.execute(
            "SELECT id, content, category_id, embedding FROM copy_items ORDER BY id",
            binary=True,
        ).fetchall())

        # COPY TO in binary, row by row.
        with cur.copy(
            "COPY (SELECT id, content, category_id, embedding FROM copy_items ORDER BY id) "
            "TO STDOUT (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "int4", "vector"])
            same(list(copy.rows()))
        assert cur.rowcount == 6

        # COPY TO in text: every value in its text form, NULL as None.
        def vector_text(e):
            return "[" + ",".join(format(float(x), "g") for x in e) + "]"

        with cur.copy("COPY copy_items TO STDOUT") as copy:
            rows = sorted(copy.rows(), key=lambda r: int(r[0]))
        assert rows == [
            (str(i), c, None if k is None else str(k), vector_text(e))
            for i, c, k, e in expected
        ]

        # csv with a header, read whole and parsed by Python's csv module.
        import csv
        import io

        with cur.copy(
            "COPY (SELECT id, content, category_id FROM copy_items WHERE id >= 100 ORDER BY id) "
            "TO STDOUT WITH (FORMAT csv, HEADER)"
        ) as copy:
            data = b"".join(bytes(chunk) for chunk in copy).decode()
        parsed = list(csv.reader(io.StringIO(data)))
        assert parsed == [["id", "content", "category_id"]] + [
            [str(i), "" if c is None else c, "" if k is None else str(k)]
            for i, c, k, _ in expected[3:]
        ]
        # NULL is an empty unquoted field; an empty string would be quoted.
        assert data.splitlines()[-1] == "102,,30"

        before = state_hash()
        with pytest.raises(psycopg.errors.BadCopyFileFormat):
            with cur.copy(
                "COPY copy_items (embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.write(b"these bytes are not a PGCOPY stream")
        assert state_hash() == before
        (n,) = conn.execute("SELECT count(*) FROM copy_items").fetchone()
        assert n == 6
