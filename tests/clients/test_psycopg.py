"""psycopg 3 against the Postgres front end: text and binary results,
server-side prepared statements, pgvector-python's register_vector with
numpy, COPY, SQLSTATEs and SCRAM logins. Expected values are computed
here with numpy / plain Python."""

import math
import os

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

ROWS = [
    (1, [1.0, 0.0, 0.0], 7),
    (2, [0.0, 1.0, 0.0], 7),
    (3, [0.0, 0.0, 1.0], 8),
    (4, [1.0, 1.0, 0.0], 7),
    (5, [3.0, 4.0, 0.0], 9),
]


def create(conn, table):
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(
        f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, vec VECTOR(3), tag BIGINT, metadata JSONB)"
    )
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {table} (id, vec, tag, metadata) VALUES (%s, %s, %s, %s)",
            [(i, str(v), t, '{"n": %d}' % i) for i, v, t in ROWS],
        )


def test_text_and_binary_results(open_dsn):
    """Text results come back as Python values of the right types, and the
    same query in binary gives the same values."""
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        create(conn, "py_text")
        want = [(i, t) for i, _, t in ROWS if t == 7]
        rows = conn.execute(
            "SELECT id, tag FROM py_text WHERE tag = %s ORDER BY id", (7,)
        ).fetchall()
        assert rows == want
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT id, tag FROM py_text WHERE tag = %s ORDER BY id", (7,))
            assert cur.fetchall() == want
        # Metadata was stored canonical: compact, keys sorted; also when
        # sent as jsonb (psycopg's Jsonb, text and binary).
        (meta,) = conn.execute("SELECT metadata FROM py_text WHERE id = 5").fetchone()
        assert bytes(meta) == b'{"n":5}'
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute("UPDATE py_text SET metadata = %s WHERE id = 1", (Jsonb({"b": [1, 2], "a": None}),))
                assert cur.rowcount == 1
                cur.execute("SELECT metadata FROM py_text WHERE id = 1")
                assert bytes(cur.fetchone()[0]) == b'{"a":null,"b":[1,2]}'


def test_prepared_statements_and_transactions(open_dsn):
    """prepare=True reuses a server-side statement; BEGIN/COMMIT issued by
    psycopg outside autocommit are accepted."""
    with psycopg.connect(open_dsn) as conn:
        create(conn, "py_prep")
        conn.commit()
        for i, v, _ in ROWS:
            row = conn.execute(
                "SELECT id, l2_squared(vec, %s) FROM py_prep WHERE id = %s",
                ("[0,0,0]", i),
                prepare=True,
            ).fetchone()
            assert row == (i, sum(x * x for x in v))
        conn.commit()


def test_pgvector_register_vector_numpy(open_dsn):
    """register_vector finds the vector type; numpy arrays go in (text and
    binary), come back as vectors, and the nearest neighbours by <-> match
    numpy's own distances."""
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        # pgvector's setup step is accepted: the type is built in.
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS py_np")
        conn.execute("CREATE TABLE py_np (id BIGINT, vec VECTOR(3), tag BIGINT)")
        data = np.array([v for _, v, _ in ROWS], dtype=np.float32)
        with conn.cursor() as cur:
            for (i, _, t), v in zip(ROWS, data):
                cur.execute("INSERT INTO py_np (id, vec, tag) VALUES (%s, %s, %s)", (i, v, t))
        q = np.array([1.0, 2.0, 0.5], dtype=np.float32)
        dist = np.linalg.norm(data.astype(np.float64) - q.astype(np.float64), axis=1)
        order = sorted(range(len(ROWS)), key=lambda k: (dist[k], ROWS[k][0]))
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute(
                    "SELECT id, vec, vec <-> %s AS d FROM py_np ORDER BY d, id LIMIT 3", (q,)
                )
                rows = cur.fetchall()
            assert [r[0] for r in rows] == [ROWS[k][0] for k in order[:3]]
            for (rid, vec, d), k in zip(rows, order):
                assert np.array_equal(vec.to_numpy(), data[k])
                assert math.isclose(d, dist[k], rel_tol=1e-9, abs_tol=1e-12)


def test_copy_and_errors(open_dsn):
    """COPY through psycopg's copy(); errors map to psycopg's SQLSTATE
    classes and leave the table as it was."""
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        create(conn, "py_copy")
        with conn.cursor() as cur:
            with cur.copy("COPY py_copy (id, vec, tag) FROM STDIN") as copy:
                copy.write_row((10, "[1,1,1]", 3))
                copy.write_row((11, "[2,2,2]", 3))
            (n,) = cur.execute("SELECT count(*) FROM py_copy WHERE tag = 3").fetchone()
            assert n == 2
            with pytest.raises(psycopg.errors.UniqueViolation):
                cur.execute("INSERT INTO py_copy (id, vec) VALUES (1, '[0,0,0]')")
            with pytest.raises(psycopg.errors.UndefinedTable):
                cur.execute("SELECT * FROM no_such_table")
            with pytest.raises(psycopg.errors.InvalidTextRepresentation):
                cur.execute("INSERT INTO py_copy (id, vec) VALUES (20, '[1,oops,3]')")
            (n,) = cur.execute("SELECT count(*) FROM py_copy").fetchone()
            assert n == len(ROWS) + 2


def test_scram_and_roles(auth_port):
    """SCRAM-SHA-256 with the user's key; a wrong key is refused; the read
    role may read but not write."""
    host = os.environ["VALORI_PG_HOST"]
    dsn = f"host={host} port={auth_port} dbname=valori"
    with psycopg.connect(dsn + " user=alice password=s3cret", autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS py_auth")
        conn.execute("CREATE TABLE py_auth (id BIGINT, vec VECTOR(2))")
        conn.execute("INSERT INTO py_auth (id, vec) VALUES (1, '[1,2]')")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn + " user=alice password=nope")
    with psycopg.connect(dsn + " user=bob password=r3ad", autocommit=True) as conn:
        assert conn.execute("SELECT id FROM py_auth").fetchall() == [(1,)]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO py_auth (id, vec) VALUES (2, '[1,2]')")


def test_failed_transaction_block_takes_only_its_end(open_dsn):
    """As in Postgres: after an error inside a transaction block (psycopg
    opens one for a connection that is not in autocommit), every other
    statement is refused with 25P02 until ROLLBACK; then the connection
    works again."""
    with psycopg.connect(open_dsn) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table_here")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_prepared_statement_cache_deallocates(open_dsn):
    """psycopg keeps at most `prepared_max` server-side statements and
    sends `DEALLOCATE name` for each it evicts. Run through more distinct
    statements than a connection may keep (PG_NAMED_STATEMENTS_MAX,
    4,096), every one prepared, they all answer: each DEALLOCATE freed
    its statement on the server."""
    with psycopg.connect(open_dsn, autocommit=True, prepare_threshold=0) as conn:
        conn.prepared_max = 16
        for i in range(4_200):
            assert conn.execute(f"SELECT {i} + %s::int", (1,), prepare=True).fetchone() == (i + 1,)


def test_now_and_floats_as_postgresql_sends_them(open_dsn):
    """now() reaches psycopg as an aware datetime in UTC, in text and in
    binary, close to this machine's clock; floats come back as the values
    PostgreSQL's float4out and float8out texts read as."""
    import datetime

    for binary in (False, True):
        with psycopg.connect(open_dsn, autocommit=True) as conn:
            with conn.cursor(binary=binary) as cur:
                before = datetime.datetime.now(datetime.timezone.utc)
                cur.execute("SELECT now(), current_timestamp, now()::timestamp")
                now, current, naive = cur.fetchone()
                after = datetime.datetime.now(datetime.timezone.utc)
                for t in (now, current):
                    assert t.utcoffset() == datetime.timedelta(0)
                    assert before - datetime.timedelta(seconds=1) <= t <= after
                assert naive.tzinfo is None
                assert naive == now.replace(tzinfo=None)
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        texts = conn.execute(
            "SELECT 1e6::real::text, (-26044.3125)::real::text, 2::float8::text"
        ).fetchone()
        # PostgreSQL 16 prints these three as 1e+06, -26044.312 and 2.
        assert texts == ("1e+06", "-26044.312", "2")


def test_array_parameters_are_arrays(open_dsn):
    """Python lists bound as psycopg sends them (int2[]/int8[] typed,
    text lists untyped `{a,b}`) are the arrays they hold, as PostgreSQL
    reads them: `= ANY(%s)`, `<> ALL(%s)`, `%s::text[]`, array equality,
    and integers beyond f32's precision kept exact. Expected rows are
    computed here from the inserted data."""
    big = 2**40 + 1
    rows = {1: ["a", "b"], 3: ["x"], big: ["a", "b"]}
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS py_arrays")
        conn.execute("CREATE TABLE py_arrays (id bigint PRIMARY KEY, tags text[], e vector(2))")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO py_arrays (id, tags, e) VALUES (%s, %s, %s)",
                [(i, t, f"[{n},{n}]") for n, (i, t) in enumerate(rows.items())],
            )
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                def ids(sql, *args):
                    return [r[0] for r in cur.execute(sql, args).fetchall()]

                assert ids("SELECT id FROM py_arrays WHERE id = ANY(%s) ORDER BY id", [1, 3]) == [1, 3]
                assert ids("SELECT id FROM py_arrays WHERE id = ANY(%s)", [big]) == [big]
                assert ids("SELECT id FROM py_arrays WHERE id <> ALL(%s) ORDER BY id", [1, 3]) == [big]
                want = sorted(i for i, t in rows.items() if t == ["a", "b"])
                assert ids("SELECT id FROM py_arrays WHERE tags = %s ORDER BY id", ["a", "b"]) == want
                want = sorted(i for i, t in rows.items() if t[0] in ("x", "a"))
                assert ids("SELECT id FROM py_arrays WHERE tags[1] = ANY(%s::text[]) ORDER BY id", ["x", "a"]) == want
                assert ids("SELECT id FROM py_arrays WHERE tags[1] = ANY(%s) ORDER BY id", ["x"]) == [3]
                assert cur.execute("SELECT cardinality(%s::text[])", (["a", "b,c", 'd"e'],)).fetchone() == (3,)
                assert cur.execute("SELECT %s::text[]", (["a", "b,c", None],)).fetchone() == (["a", "b,c", None],)
                # A list as the query vector of a nearest-neighbour search.
                assert ids("SELECT id FROM py_arrays ORDER BY e <-> %s::vector LIMIT 1", [1.9, 2.1]) == [big]
        conn.execute("DELETE FROM py_arrays WHERE id = ANY(%s)", ([3, big],))
        assert conn.execute("SELECT id FROM py_arrays").fetchall() == [(1,)]


def test_untyped_limit_and_offset_parameters(open_dsn):
    """`LIMIT $n OFFSET $n` with parameters sent untyped as text, as
    node-postgres and knex send them, are integers (PostgreSQL infers
    bigint); a parameterised write is described with NoData."""
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        create(conn, "py_limit")
        pg = conn.pgconn
        result = pg.exec_params(
            b"SELECT id FROM py_limit ORDER BY id LIMIT $1 OFFSET $2", [b"2", b"1"], [0, 0]
        )
        assert result.error_message == b""
        assert [int(result.get_value(i, 0)) for i in range(result.ntuples)] == [2, 3]
        pg.prepare(b"upd", b"UPDATE py_limit SET tag = $1 WHERE id = 1")
        described = pg.describe_prepared(b"upd")
        assert (described.nparams, described.nfields) == (1, 0)
        assert described.status == psycopg.pq.ExecStatus.COMMAND_OK
