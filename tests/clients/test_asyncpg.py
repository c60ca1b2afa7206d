"""asyncpg against the Postgres front end: its type introspection,
pgvector-python's register_vector (binary vectors both ways), prepared
statements and errors. Expected values are computed here."""

import asyncio
import math
import os

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector


def run(coro):
    return asyncio.run(coro)


async def connect():
    """A connection to the server under test, as user `tester`."""
    return await asyncpg.connect(
        host=os.environ["VALORI_PG_HOST"],
        port=int(os.environ["VALORI_PG_PORT"]),
        user="tester",
        database="valori",
    )


def test_asyncpg_vectors():
    """Inserts numpy vectors through register_vector's binary codec and
    reads back the same floats and numpy's distances, nearest first."""

    async def main():
        conn = await connect()
        try:
            await register_vector(conn)
            await conn.execute("DROP TABLE IF EXISTS apg")
            await conn.execute("CREATE TABLE apg (id BIGINT, vec VECTOR(3), tag BIGINT)")
            data = np.array([[1, 0, 0], [0, 1, 0], [0.5, 0.25, 2], [3, 4, 0]], dtype=np.float32)
            await conn.executemany(
                "INSERT INTO apg (id, vec, tag) VALUES ($1, $2, $3)",
                [(i + 1, v, 7) for i, v in enumerate(data)],
            )
            q = np.array([0.5, 0.5, 0.5], dtype=np.float32)
            rows = await conn.fetch(
                "SELECT id, vec, vec <-> $1 AS d FROM apg ORDER BY d, id", q
            )
            dist = np.linalg.norm(data.astype(np.float64) - q.astype(np.float64), axis=1)
            order = sorted(range(len(data)), key=lambda k: (dist[k], k + 1))
            assert [r["id"] for r in rows] == [k + 1 for k in order]
            for r, k in zip(rows, order):
                assert np.array_equal(r["vec"].to_numpy(), data[k])
                assert math.isclose(r["d"], dist[k], rel_tol=1e-9)
            stmt = await conn.prepare("SELECT count(*) FROM apg WHERE tag = $1")
            assert await stmt.fetchval(7) == 4
            assert await stmt.fetchval(8) == 0
            try:
                await conn.execute("INSERT INTO apg (id, vec) VALUES (9, '[1,2]')")
                raise AssertionError("a vector of the wrong dimension was accepted")
            except asyncpg.PostgresError as e:
                assert e.sqlstate == "22023"
        finally:
            await conn.close()

    run(main())


def test_pool_resets_connections_on_release():
    """asyncpg's pool, as applications use it: on each release it sends
    its reset query (pg_advisory_unlock_all, CLOSE ALL, UNLISTEN *,
    RESET ALL). A setting and an advisory lock taken on a pooled
    connection are gone when the same connection is acquired again, and
    another connection can take the lock."""

    async def main():
        pool = await asyncpg.create_pool(
            host=os.environ["VALORI_PG_HOST"],
            port=int(os.environ["VALORI_PG_PORT"]),
            user="tester",
            database="valori",
            min_size=1,
            max_size=1,
        )
        try:
            async with pool.acquire() as conn:
                await conn.execute("SET valori.ef_search = 77")
                await conn.execute("SELECT pg_advisory_lock(4242)")
                assert await conn.fetchval("SHOW valori.ef_search") == "77"
                first = id(conn._con)
            async with pool.acquire() as conn:
                # max_size 1: the same connection, reset.
                assert id(conn._con) == first
                # Reset to the engine's default result list size, 64.
                assert await conn.fetchval("SHOW valori.ef_search") == "64"
                for i in range(3):
                    assert await conn.fetchval("SELECT 40 + $1::int", i) == 40 + i
            other = await connect()
            try:
                assert await other.fetchval("SELECT pg_try_advisory_lock(4242)") is True
            finally:
                await other.close()
        finally:
            await pool.close()

    run(main())


def test_now_is_an_aware_datetime():
    """asyncpg decodes now() (binary timestamptz) as an aware datetime in
    UTC within a second of this machine's clock, and current_time as a
    time."""
    import datetime

    async def main():
        conn = await connect()
        try:
            before = datetime.datetime.now(datetime.timezone.utc)
            row = await conn.fetchrow("SELECT now() AS n, current_time AS t")
            after = datetime.datetime.now(datetime.timezone.utc)
        finally:
            await conn.close()
        assert row["n"].utcoffset() == datetime.timedelta(0)
        assert before - datetime.timedelta(seconds=1) <= row["n"] <= after
        assert isinstance(row["t"], datetime.time)

    run(main())
