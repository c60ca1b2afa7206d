"""Transaction blocks as drivers and ORMs use them, unchanged: psycopg's
implicit transactions, `conn.transaction()` and nested savepoints,
SQLAlchemy's Session (rollback, begin_nested) and asyncpg's
`transaction()`. Every result is read back over a second connection in
autocommit, where a block's writes must appear only after COMMIT."""

import asyncio
import os

import asyncpg
import psycopg
import pytest
from sqlalchemy import BigInteger, Text, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


def seen(open_dsn, table):
    """The ids in `table` as another connection sees them."""
    with psycopg.connect(open_dsn, autocommit=True) as other:
        return [r[0] for r in other.execute(f"SELECT id FROM {table} ORDER BY id")]


def fresh(open_dsn, table):
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector(2), note text)")


def test_psycopg_rollback_undoes_and_commit_publishes(open_dsn):
    """A psycopg connection outside autocommit opens a block at its first
    statement: its inserts are visible to itself, not to others; rollback()
    drops them, commit() publishes them together."""
    fresh(open_dsn, "tx_psy")
    with psycopg.connect(open_dsn) as conn:
        conn.execute("INSERT INTO tx_psy VALUES (1, '[1,1]', 'a')")
        conn.execute("INSERT INTO tx_psy VALUES (2, '[2,2]', 'b')")
        assert [r[0] for r in conn.execute("SELECT id FROM tx_psy ORDER BY id")] == [1, 2]
        assert seen(open_dsn, "tx_psy") == []
        conn.rollback()
        assert seen(open_dsn, "tx_psy") == []
        conn.execute("INSERT INTO tx_psy VALUES (3, '[3,3]', 'c')")
        conn.execute("UPDATE tx_psy SET note = 'c2' WHERE id = 3")
        assert seen(open_dsn, "tx_psy") == []
        conn.commit()
    assert seen(open_dsn, "tx_psy") == [3]


def test_psycopg_nested_transaction_rolls_back_to_its_savepoint(open_dsn):
    """`with conn.transaction()` nested in another makes a savepoint; an
    exception inside it (here a duplicate key) undoes only its writes and
    the outer block commits the rest."""
    fresh(open_dsn, "tx_nest")
    with psycopg.connect(open_dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO tx_nest VALUES (1, '[1,1]', 'a')")
            with pytest.raises(psycopg.errors.UniqueViolation):
                with conn.transaction():
                    conn.execute("INSERT INTO tx_nest VALUES (2, '[2,2]', 'b')")
                    conn.execute("INSERT INTO tx_nest VALUES (1, '[9,9]', 'dup')")
            conn.execute("INSERT INTO tx_nest VALUES (3, '[3,3]', 'c')")
            assert seen(open_dsn, "tx_nest") == []
    assert seen(open_dsn, "tx_nest") == [1, 3]


def test_sqlalchemy_session_rollback_and_begin_nested(open_dsn):
    """The ORM's unit of work: objects added then rolled back are gone;
    a begin_nested() savepoint rolled back drops only its object; commit
    publishes the rest."""
    from pgvector.sqlalchemy import Vector

    fresh(open_dsn, "tx_orm")

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "tx_orm"
        id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        note: Mapped[str] = mapped_column(Text)
        embedding = mapped_column(Vector(2))

    url = "postgresql+psycopg://tester@{}:{}/valori".format(
        os.environ["VALORI_PG_HOST"], os.environ["VALORI_PG_PORT"]
    )
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            session.add(Item(id=1, note="a", embedding=[1, 1]))
            session.flush()
            assert session.scalars(select(Item.id)).all() == [1]
            session.rollback()
            assert session.scalars(select(Item.id)).all() == []
            session.add(Item(id=2, note="b", embedding=[2, 2]))
            nested = session.begin_nested()
            session.add(Item(id=3, note="c", embedding=[3, 3]))
            session.flush()
            nested.rollback()
            session.add(Item(id=4, note="d", embedding=[4, 4]))
            session.commit()
    finally:
        engine.dispose()
    assert seen(open_dsn, "tx_orm") == [2, 4]


def test_asyncpg_transaction_context(open_dsn):
    """asyncpg's `async with conn.transaction()`: an exception raised in
    the block rolls it back, a block that ends normally commits."""
    fresh(open_dsn, "tx_apg")

    async def main():
        conn = await asyncpg.connect(
            host=os.environ["VALORI_PG_HOST"],
            port=int(os.environ["VALORI_PG_PORT"]),
            user="tester",
            database="valori",
        )
        try:
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    await conn.execute("INSERT INTO tx_apg VALUES (1, '[1,1]', 'a')")
                    assert await conn.fetchval("SELECT count(*) FROM tx_apg") == 1
                    raise RuntimeError("abandon the block")
            async with conn.transaction():
                await conn.execute("INSERT INTO tx_apg VALUES (2, '[2,2]', 'b')")
                await conn.execute("INSERT INTO tx_apg VALUES (3, '[3,3]', 'c')")
            assert not conn.is_in_transaction()
        finally:
            await conn.close()

    asyncio.run(main())
    assert seen(open_dsn, "tx_apg") == [2, 3]


def test_failed_commit_leaves_the_connection_idle(open_dsn):
    """A COMMIT refused with 40001 (another connection wrote the table
    after the block read it) ends the block, as in PostgreSQL: the server
    reports the connection idle, so the retry the error asks for, here
    through psycopg's `conn.transaction()`, runs as a new block."""
    fresh(open_dsn, "tx_retry")
    with psycopg.connect(open_dsn, autocommit=True) as setup:
        setup.execute("INSERT INTO tx_retry (id, embedding, note) VALUES (1, '[1,1]', 'a'), (2, '[2,2]', 'b')")
    with psycopg.connect(open_dsn) as a, psycopg.connect(open_dsn, autocommit=True) as b:
        a.execute("UPDATE tx_retry SET note = 'a1' WHERE id = 1")
        a.execute("UPDATE tx_retry SET note = 'a2' WHERE id = 2")
        b.execute("INSERT INTO tx_retry (id, embedding, note) VALUES (3, '[3,3]', 'b')")
        with pytest.raises(psycopg.errors.SerializationFailure):
            a.commit()
        assert a.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with a.transaction():
            a.execute("UPDATE tx_retry SET note = 'a2' WHERE id = 1")
        a.commit()
    with psycopg.connect(open_dsn, autocommit=True) as other:
        assert other.execute("SELECT note FROM tx_retry WHERE id = 1").fetchone() == ("a2",)


def test_no_update_is_lost_under_a_block(open_dsn):
    """A block's `n = n + 1` was computed from the row as it read it: when
    another session commits `n = n + 10` to that row meanwhile, COMMIT
    fails with 40001 instead of writing `n + 1` over it, and the retry
    adds 1 to the committed value (0 + 10 + 1)."""
    with psycopg.connect(open_dsn, autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS tx_lost")
        setup.execute("CREATE TABLE tx_lost (id bigint PRIMARY KEY, n int)")
        setup.execute("INSERT INTO tx_lost VALUES (1, 0)")
    with psycopg.connect(open_dsn) as a, psycopg.connect(open_dsn, autocommit=True) as b:
        a.execute("UPDATE tx_lost SET n = n + 1 WHERE id = 1")
        b.execute("UPDATE tx_lost SET n = n + 10 WHERE id = 1")
        with pytest.raises(psycopg.errors.SerializationFailure):
            a.commit()
        assert b.execute("SELECT n FROM tx_lost").fetchone() == (10,)
        a.execute("UPDATE tx_lost SET n = n + 1 WHERE id = 1")
        a.commit()
        assert b.execute("SELECT n FROM tx_lost").fetchone() == (11,)
