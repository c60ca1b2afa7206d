"""Arrow Flight with pyarrow.flight: collections loaded with DoPut and read
with DoGet, a KNN query as a ticket, bad batches refused whole, and the
server's users; every result read back over Postgres (psycopg) or REST."""

import json
import math
import os
import urllib.request
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.flight as flight
import pytest


# pyarrow raises INVALID_ARGUMENT as ArrowInvalid, other codes as FlightError
# subclasses.
REFUSED = (flight.FlightError, pa.ArrowException)


def _port(name):
    return int(os.environ[name])


@pytest.fixture
def fl():
    client = flight.connect(f"grpc://127.0.0.1:{_port('VALORI_FLIGHT_PORT')}")
    yield client
    client.close()


@pytest.fixture
def pg():
    dsn = "host=127.0.0.1 port={} user=tester dbname=valori".format(_port("VALORI_PG_PORT"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def _proof(port_var="VALORI_REST_PORT", key=None):
    request = urllib.request.Request(f"http://127.0.0.1:{_port(port_var)}/v1/proof/state")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request) as r:
        return json.load(r)


def _state(port_var="VALORI_REST_PORT", key=None):
    """What a write changes: the log and the state hash (the index hashes
    also move as the background builder links blocks)."""
    p = _proof(port_var, key)
    return (p["log_size"], p["log_root"], p["state_hash"])


def _put(client, name, table, options=None):
    writer, reader = client.do_put(
        flight.FlightDescriptor.for_path(name), table.schema, options=options
    )
    writer.write_table(table)
    writer.done_writing()
    answer = reader.read()
    writer.close()
    return json.loads(answer.to_pybytes())


def _vectors(rows, dtype=pa.float32()):
    return pa.array(rows, type=pa.list_(dtype))


def test_put_list_get_and_read_back_over_postgres(fl, pg):
    """A DoPut lands where SQL users look; ListFlights and GetFlightInfo
    describe the collection; DoGet gives the rows back with the state
    the export was read from, which REST's proof confirms."""
    pg.execute("CREATE TABLE fl_items (id BIGINT PRIMARY KEY, vec VECTOR(3), tag BIGINT, metadata JSONB)")
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "vector": _vectors([[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0.25]]),
            "tag": pa.array([7, 7, 8], pa.int64()),
            "metadata": pa.array(['{"lang": "en"}', None, '{"lang": "fr"}']),
        }
    )
    result = _put(fl, "fl_items", table)
    assert result["rows"] == 3

    rows = pg.execute("SELECT id, tag, metadata FROM fl_items ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(1, 7), (2, 7), (3, 8)]
    # Stored in the canonical JSON form every front end uses.
    assert bytes(rows[0][2]) == b'{"lang":"en"}'

    names = {info.descriptor.path[0].decode() for info in fl.list_flights()}
    assert "fl_items" in names
    info = fl.get_flight_info(flight.FlightDescriptor.for_path("fl_items"))
    assert info.total_records == 3
    got = fl.do_get(info.endpoints[0].ticket).read_all()
    assert got.column("id").to_pylist() == [1, 2, 3]
    # Q16.16 raw components: 0.5 is 32768, 0.25 is 16384.
    assert got.column("vector").to_pylist()[2] == [32768, 32768, 16384]
    assert got.column("vector_f32").to_pylist()[2] == [0.5, 0.5, 0.25]
    meta = got.schema.metadata
    proof = _proof()
    assert int(meta[b"valori.log_size"]) == proof["log_size"]
    assert meta[b"valori.state_hash"].decode() == proof["state_hash"]
    assert meta[b"valori.log_root"].decode() == proof["log_root"]
    hashes = {c["name"]: c["hash"] for c in proof["collections"]}
    assert meta[b"valori.collection_hash"].decode() == hashes["fl_items"]

    df = got.to_pandas()
    assert list(df["id"]) == [1, 2, 3]
    assert fl.get_schema(flight.FlightDescriptor.for_path("fl_items")).schema.names == [
        "id", "vector", "tag", "metadata", "vector_f32",
    ]


def test_knn_query_ticket_answers_as_postgres(fl, pg):
    """A SQL ticket goes through the statement layer: the same KNN rewrite
    gives the same rows as psql's query."""
    pg.execute("CREATE TABLE fl_knn (id BIGINT PRIMARY KEY, vec VECTOR(2), tag BIGINT, metadata JSONB)")
    vectors = [[math.cos(i / 10), math.sin(i / 10)] for i in range(200)]
    _put(fl, "fl_knn", pa.table({"vector": _vectors(vectors, pa.float64())}))
    sql = "SELECT id FROM fl_knn ORDER BY vec <-> '[0.3, 0.9]' LIMIT 5"
    expected = [r[0] for r in pg.execute(sql).fetchall()]
    got = fl.do_get(flight.Ticket(sql.encode())).read_all()
    assert got.column("id").to_pylist() == expected
    info = fl.get_flight_info(flight.FlightDescriptor.for_command(sql))
    assert info.schema.names == ["id"]


def test_bad_batches_are_refused_whole(fl, pg):
    """Wrong dimension, NaN, wrong types and an unknown collection are
    refused with a message naming the problem; the state hash does not
    move."""
    pg.execute("CREATE TABLE fl_bad (id BIGINT PRIMARY KEY, vec VECTOR(2), tag BIGINT, metadata JSONB)")
    before = _state()
    cases = [
        (pa.table({"vector": _vectors([[1, 2, 3]])}), "dimension"),
        (pa.table({"vector": _vectors([[1, 2], [1, float("nan")]])}), "vector 1 of the batch"),
        (pa.table({"vector": pa.array(["[1,2]"])}), "has type Utf8"),
        (pa.table({"vector": _vectors([[1, 2]]), "id": pa.array([-1])}), "id"),
        (pa.table({"vector": _vectors([[1e9, 2]])}), "vector 0 of the batch"),
    ]
    for table, needle in cases:
        with pytest.raises(REFUSED) as err:
            _put(fl, "fl_bad", table)
        assert needle.lower() in str(err.value).lower(), str(err.value)
    with pytest.raises(REFUSED, match="does not exist"):
        _put(fl, "fl_missing", pa.table({"vector": _vectors([[1, 2]])}))
    assert _state() == before
    assert pg.execute("SELECT count(*) FROM fl_bad").fetchone()[0] == 0


def test_users_and_roles():
    """No credentials are refused; a basic login by handshake gives a token
    that reads; the read role cannot load; the write role can."""
    location = f"grpc://127.0.0.1:{_port('VALORI_FLIGHT_AUTH_PORT')}"
    client = flight.connect(location)
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(client.list_flights())
    reader = flight.FlightCallOptions(headers=[client.authenticate_basic_token("bob", "r3ad")])
    writer = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer s3cret")])
    request = urllib.request.Request(
        f"http://127.0.0.1:{_port('VALORI_REST_AUTH_PORT')}/v1/collections",
        data=json.dumps({"name": "fl_auth", "dim": 2}).encode(),
        headers={"Authorization": "Bearer s3cret", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request).close()
    table = pa.table({"vector": _vectors([[1, 2]])})
    before = _state("VALORI_REST_AUTH_PORT", "s3cret")
    with pytest.raises(flight.FlightUnauthorizedError):
        _put(client, "fl_auth", table, reader)
    assert _state("VALORI_REST_AUTH_PORT", "s3cret") == before
    assert _put(client, "fl_auth", table, writer)["rows"] == 1
    got = client.do_get(flight.Ticket(b"fl_auth"), reader).read_all()
    assert got.num_rows == 1


# --- Flight SQL through ADBC ---------------------------------------------

import adbc_driver_flightsql.dbapi as adbc  # noqa: E402
import polars as pl  # noqa: E402


@pytest.fixture
def conn():
    with adbc.connect(f"grpc://127.0.0.1:{_port('VALORI_FLIGHT_PORT')}") as c:
        yield c


def test_adbc_execute_fetch_and_parameters(conn, pg):
    """ADBC prepares every statement: plain queries, a query with
    parameters (including a vector for the KNN search) and a write all go
    through the statement layer; results come back as Arrow, pandas and
    polars, and equal what psycopg reads."""
    pg.execute("CREATE TABLE adbc_items (id BIGINT PRIMARY KEY, vec VECTOR(2), tag BIGINT, metadata JSONB)")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO adbc_items (id, vec, tag) VALUES (1, '[1,0]', 7), (2, '[0,1]', 7), (3, '[0.7,0.7]', 8)")
        cur.execute("SELECT id, tag FROM adbc_items ORDER BY id")
        table = cur.fetch_arrow_table()
        assert table.column("id").to_pylist() == [1, 2, 3]
        cur.execute("SELECT id FROM adbc_items WHERE tag = $1 ORDER BY id", parameters=(7,))
        assert cur.fetch_df()["id"].tolist() == [1, 2]
        sql = "SELECT id FROM adbc_items ORDER BY vec <-> $1 LIMIT 2"
        cur.execute(sql, parameters=([0.9, 0.2],))
        knn = pl.from_arrow(cur.fetch_arrow_table())["id"].to_list()
        expected = [r[0] for r in pg.execute("SELECT id FROM adbc_items ORDER BY vec <-> '[0.9,0.2]' LIMIT 2").fetchall()]
        assert knn == expected
    assert [r[0] for r in pg.execute("SELECT id FROM adbc_items ORDER BY id").fetchall()] == [1, 2, 3]


def test_adbc_ingest_and_get_objects(conn, pg):
    """adbc_ingest creates and appends to a collection in one event per
    call; get_objects lists it with its columns; the rows are where
    psycopg looks."""
    data = pa.table(
        {
            "id": pa.array([10, 11], pa.int64()),
            "vec": pa.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.25]], pa.list_(pa.float64())),
            "tag": pa.array([3, 4], pa.int64()),
        }
    )
    with conn.cursor() as cur:
        assert cur.adbc_ingest("adbc_loaded", data, mode="create") == 2
        more = pa.table({"id": pa.array([12], pa.int64()), "vec": pa.array([[0.5, 0.5, 0.5]])})
        assert cur.adbc_ingest("adbc_loaded", more, mode="append") == 1
        with pytest.raises(Exception):
            cur.adbc_ingest("adbc_loaded", more, mode="create")
    rows = pg.execute("SELECT id, tag FROM adbc_loaded ORDER BY id").fetchall()
    assert rows == [(10, 3), (11, 4), (12, 0)]
    objects = conn.adbc_get_objects(depth="all", table_name_filter="adbc_loaded").read_all().to_pylist()
    tables = [t for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]]
    assert [t["table_name"] for t in tables] == ["adbc_loaded"]
    columns = [c["column_name"] for c in tables[0]["table_columns"]]
    assert "id" in columns and "vec" in columns
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "Valori"


def test_adbc_catalogs_and_table_types_agree_with_postgres(conn, pg):
    """ADBC's get_table_types and get_objects at the catalog and schema
    depths: one catalog holding one schema, where a qualified SQL name
    finds the tables; the table types cover every table listed; and the
    tables are exactly those information_schema.tables lists over
    psycopg."""
    pg.execute("CREATE TABLE adbc_cat_a (id BIGINT PRIMARY KEY, vec VECTOR(2))")
    pg.execute("CREATE TABLE adbc_cat_b (id bigserial PRIMARY KEY, note text)")
    types = conn.adbc_get_table_types()
    assert types == sorted(set(types)) and types, types

    catalogs = conn.adbc_get_objects(depth="catalogs").read_all().to_pylist()
    assert len(catalogs) == 1, catalogs
    catalog = catalogs[0]["catalog_name"]
    # At depth "catalogs" the schemas are not asked for: ADBC leaves them null.
    assert catalogs[0]["catalog_db_schemas"] is None

    schemas = conn.adbc_get_objects(depth="db_schemas").read_all().to_pylist()
    assert [c["catalog_name"] for c in schemas] == [catalog]
    db_schemas = [s["db_schema_name"] for s in schemas[0]["catalog_db_schemas"]]
    assert len(db_schemas) == 1, db_schemas
    schema = db_schemas[0]

    # The names Flight SQL lists are those SQL resolves and Postgres reports.
    assert pg.execute("SELECT current_database()").fetchone()[0] == catalog
    assert pg.execute(f'SELECT count(*) FROM "{catalog}"."{schema}".adbc_cat_a').fetchone()[0] == 0

    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    listed = sorted(
        (c["catalog_name"], s["db_schema_name"], t["table_name"], t["table_type"])
        for c in objects
        for s in c["catalog_db_schemas"]
        for t in s["db_schema_tables"]
    )
    assert {t for (_, _, _, t) in listed} <= set(types), (listed, types)
    over_pg = sorted(
        pg.execute(
            "SELECT table_catalog, table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    )
    assert [(c, s, n) for (c, s, n, _) in listed] == over_pg
    assert ("adbc_cat_a" in [n for (_, _, n) in over_pg]) and ("adbc_cat_b" in [n for (_, _, n) in over_pg])


def test_adbc_ingest_into_declared_table(conn, pg):
    """adbc_ingest appends to a table with declared columns as INSERT does
    (one event; the serial key and DEFAULT filled), a bad batch changes
    nothing, mode replace is refused; get_objects shows the declared
    columns; psycopg reads the rows."""
    pg.execute("DROP TABLE IF EXISTS adbc_declared")
    pg.execute(
        "CREATE TABLE adbc_declared (id bigserial PRIMARY KEY, embedding vector(2), content text NOT NULL, "
        "category_id int DEFAULT 7, price real)"
    )
    data = pa.table(
        {
            "embedding": pa.array([[1.0, 0.0], [0.5, 0.5]], pa.list_(pa.float32())),
            "content": ["a", "b"],
            "price": pa.array([1.5, None], pa.float32()),
        }
    )
    with conn.cursor() as cur:
        assert cur.adbc_ingest("adbc_declared", data, mode="append") == 2
        before = _state()
        bad = pa.table({"embedding": pa.array([[1.0, 0.0]], pa.list_(pa.float32())), "content": [None]},
                       schema=pa.schema([("embedding", pa.list_(pa.float32())), ("content", pa.string())]))
        with pytest.raises(Exception, match="null value"):
            cur.adbc_ingest("adbc_declared", bad, mode="append")
        with pytest.raises(Exception, match="declared columns"):
            cur.adbc_ingest("adbc_declared", data, mode="replace")
        assert _state() == before
    rows = pg.execute("SELECT id, content, category_id, price FROM adbc_declared ORDER BY id").fetchall()
    assert rows == [(1, "a", 7, 1.5), (2, "b", 7, None)]
    objects = conn.adbc_get_objects(depth="all", table_name_filter="adbc_declared").read_all().to_pylist()
    tables = [t for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]]
    columns = [c["column_name"] for c in tables[0]["table_columns"]]
    assert columns == ["id", "embedding", "content", "category_id", "price"]


def test_adbc_ingest_creates_a_declared_table_from_the_schema(conn, pg):
    """adbc_ingest in mode create of a DataFrame whose columns are not the
    fixed layout's declares a table from its Arrow schema (int64 →
    bigint, string → text, float32 → real, a fixed-size list of 3 floats
    → vector(3), a non-nullable field → NOT NULL) and loads the rows;
    Postgres reads them back, searches the vectors (nearest by NumPy's
    own distances) and lists the column types; a column type with no
    counterpart (uint64) is refused naming it, nothing created."""
    import numpy as np

    vectors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.6, 0.1]], dtype=np.float32)
    schema = pa.schema(
        [
            pa.field("doc_id", pa.int64(), nullable=False),
            pa.field("body", pa.string()),
            pa.field("score", pa.float32()),
            pa.field("embedding", pa.list_(pa.float32(), 3)),
        ]
    )
    data = pa.table(
        {
            "doc_id": [1, 2, 3],
            "body": ["one", "two", None],
            "score": [0.5, 1.5, 2.5],
            "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32(), 3)),
        },
        schema=schema,
    )
    pg.execute("DROP TABLE IF EXISTS adbc_from_schema")
    with conn.cursor() as cur:
        assert cur.adbc_ingest("adbc_from_schema", data, mode="create") == 3
        assert cur.adbc_ingest("adbc_from_schema", data.slice(0, 1), mode="append") == 1
    types = pg.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'adbc_from_schema' ORDER BY ordinal_position"
    ).fetchall()
    assert [(n, t) for n, t, _ in types][:3] == [("doc_id", "bigint"), ("body", "text"), ("score", "real")]
    assert types[3][0] == "embedding"
    assert types[0][2] == "NO" and types[1][2] == "YES"
    rows = pg.execute("SELECT doc_id, body, score FROM adbc_from_schema ORDER BY doc_id, body").fetchall()
    assert rows == [(1, "one", 0.5), (1, "one", 0.5), (2, "two", 1.5), (3, None, 2.5)]
    q = np.array([0.5, 0.7, 0.0], dtype=np.float32)
    expected = int(np.argmin(((vectors - q) ** 2).sum(axis=1))) + 1
    nearest = pg.execute(
        "SELECT doc_id FROM adbc_from_schema ORDER BY embedding <-> '[0.5,0.7,0.0]' LIMIT 1"
    ).fetchone()[0]
    assert nearest == expected
    unsigned = pa.table({"n": pa.array([1], pa.uint64()), "embedding": pa.array([[1.0]], pa.list_(pa.float32(), 1))})
    with conn.cursor() as cur:
        with pytest.raises(Exception, match="UInt64"):
            cur.adbc_ingest("adbc_unsigned", unsigned, mode="create")
    missing = pg.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'adbc_unsigned'")
    assert missing.fetchone()[0] == 0


def _readme_block(after):
    """The first ```python block of the README after the line that starts
    with `after`."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rest = text[text.index(after):]
    start = rest.index("```python\n") + len("```python\n")
    return rest[start:rest.index("```", start)]


def test_readme_examples_run_as_written(pg, capsys):
    """The README's pyarrow and ADBC examples run as written against a
    collection `docs` (only the port is the test server's)."""
    pg.execute("CREATE TABLE docs (id BIGINT PRIMARY KEY, vec VECTOR(3), tag BIGINT, metadata JSONB)")
    pg.execute("INSERT INTO docs (id, vec, tag) VALUES (0, '[1,0,0]', 7), (1, '[0,1,0]', 7), (2, '[0.9,0.1,0]', 8)")
    port = str(_port("VALORI_FLIGHT_PORT"))
    pyarrow_example = _readme_block("Arrow Flight clients read")
    adbc_example = _readme_block("Flight SQL clients (ADBC, JDBC)")
    assert pyarrow_example.count("\n") == 5 and adbc_example.count("\n") == 5
    scope = {}
    exec(pyarrow_example.replace("50051", port), scope)
    assert scope["table"].num_rows == 3
    assert list(scope["df"]["id"]) == [0, 1, 2]
    exec(adbc_example.replace("50051", port), {})
    scope_out = capsys.readouterr().out
    assert "id" in scope_out and "tag" in scope_out


def test_adbc_login_and_roles():
    """ADBC logs in with username and password (the handshake); the read
    role queries but cannot ingest, and nothing is written; the write role
    ingests."""
    uri = f"grpc://127.0.0.1:{_port('VALORI_FLIGHT_AUTH_PORT')}"
    data = pa.table({"vec": pa.array([[1.0, 2.0]])})
    before = _state("VALORI_REST_AUTH_PORT", "s3cret")
    with adbc.connect(uri, db_kwargs={"username": "bob", "password": "r3ad"}) as reader:
        with reader.cursor() as cur:
            cur.execute("SELECT 1 AS one")
            assert cur.fetch_arrow_table().column("one").to_pylist() == [1]
            with pytest.raises(Exception, match="(?i)read role"):
                cur.adbc_ingest("adbc_auth", data, mode="create")
    assert _state("VALORI_REST_AUTH_PORT", "s3cret") == before
    with adbc.connect(uri, db_kwargs={"username": "alice", "password": "s3cret"}) as writer:
        with writer.cursor() as cur:
            assert cur.adbc_ingest("adbc_auth", data, mode="create") == 1


def test_sql_ticket_last_chunk_says_which_state(fl, pg):
    """A SQL ticket read chunk by chunk with pyarrow: the last chunk's
    app_metadata names the state before the statement ran (`from`), the
    state when it finished (`to`) and `consistent` (nothing written in
    between, so every row is of that state), matching REST's proof; and
    `read_all` of the same ticket still gives every row."""
    table = pa.table({"vector": pa.array([[float(i), 1.0] for i in range(3000)], pa.list_(pa.float32()))})
    pg.execute("CREATE TABLE fl_prov (id BIGINT PRIMARY KEY, vec VECTOR(2), tag BIGINT, metadata JSONB)")
    _put(fl, "fl_prov", table)
    ticket = flight.Ticket(b"SELECT id FROM fl_prov WHERE id < 2500")
    proof = _proof()
    reader = fl.do_get(ticket)
    rows, last = 0, None
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            break
        if chunk.data is not None:
            rows += chunk.data.num_rows
        if chunk.app_metadata is not None:
            last = json.loads(chunk.app_metadata.to_pybytes())
    assert rows == 2500
    here = {"log_size": proof["log_size"], "log_root": proof["log_root"], "state_hash": proof["state_hash"]}
    assert last == {"from": here, "to": here, "consistent": True}
    assert fl.do_get(ticket).read_all().num_rows == 2500


def test_declared_tables_export_through_sql(fl, pg):
    """A table with declared columns is listed, described and exported
    by its name with every declared column in its Arrow type plus the exact
    Q16.16 view of its vector, from one state with its provenance; a SQL
    ticket over it answers the declared columns; both equal what psycopg
    reads."""
    pg.execute("DROP TABLE IF EXISTS fl_declared")
    pg.execute(
        "CREATE TABLE fl_declared (id bigserial PRIMARY KEY, embedding vector(2), content text, "
        "n int DEFAULT 7, at timestamptz, blob bytea, labels text[])"
    )
    pg.execute(
        "INSERT INTO fl_declared (embedding, content, at, blob, labels) VALUES "
        "('[1,2]', 'a', '2024-01-02 03:04:05+00', '\\x0102', '{p,q}'), ('[3,4]', NULL, NULL, NULL, NULL)"
    )
    info = fl.get_flight_info(flight.FlightDescriptor.for_path("fl_declared"))
    assert info.total_records == 2
    assert info.schema.names == [
        "id", "embedding", "content", "n", "at", "blob", "labels", "embedding_q16",
    ]
    table = fl.do_get(flight.Ticket(b"fl_declared")).read_all()
    types = {f.name: f.type for f in table.schema}
    assert types["content"] == pa.string() and types["n"] == pa.int32()
    assert types["at"] == pa.timestamp("us", tz="UTC") and types["blob"] == pa.binary()
    assert types["labels"] == pa.list_(pa.string())
    rows = pg.execute("SELECT id, content, n, blob, labels FROM fl_declared ORDER BY id").fetchall()
    assert list(zip(*[table.column(c).to_pylist() for c in ("id", "content", "n", "blob", "labels")])) == [
        (r[0], r[1], r[2], None if r[3] is None else bytes(r[3]), r[4]) for r in rows
    ]
    assert table.column("embedding").to_pylist() == [[1.0, 2.0], [3.0, 4.0]]
    assert table.column("embedding_q16").to_pylist() == [[65536, 131072], [196608, 262144]]
    proof = _proof()
    meta = table.schema.metadata
    assert meta[b"valori.log_size"] == str(proof["log_size"]).encode()
    assert meta[b"valori.state_hash"] == proof["state_hash"].encode()
    by_sql = fl.do_get(
        flight.Ticket(b"SELECT id, content, embedding FROM fl_declared ORDER BY id")
    ).read_all()
    assert by_sql.column("id").to_pylist() == [1, 2]
    assert by_sql.column("content").to_pylist() == ["a", None]
    assert by_sql.column("embedding").to_pylist() == [[1.0, 2.0], [3.0, 4.0]]


def test_declared_table_put_and_bad_batches(fl, pg):
    """DoPut into a table with declared columns inserts as INSERT does
    (the serial key and the DEFAULT filled), and each bad batch (unknown
    column, wrong type, NULL in NOT NULL, duplicate key, wrong dimension,
    NaN) is refused whole with the state unchanged; psycopg reads the
    result."""
    pg.execute("DROP TABLE IF EXISTS fl_put")
    pg.execute(
        "CREATE TABLE fl_put (id bigserial PRIMARY KEY, embedding vector(2), content text NOT NULL, "
        "n int DEFAULT 7)"
    )
    good = pa.table({"embedding": _vectors([[1, 0], [0, 1]]), "content": ["a", "b"]})
    assert _put(fl, "fl_put", good) == {"rows": 2}
    assert pg.execute("SELECT id, content, n FROM fl_put ORDER BY id").fetchall() == [
        (1, "a", 7),
        (2, "b", 7),
    ]
    before = _state()
    for bad, message in [
        (pa.table({"embedding": _vectors([[1, 0]]), "content": ["c"], "colour": ["red"]}), "colour"),
        (pa.table({"embedding": _vectors([[1, 0]]), "content": ["c"], "n": ["7"]}), "expected an integer"),
        (pa.table({"embedding": _vectors([[1, 0], [0, 1]]), "content": ["c", None]}), "null value"),
        (pa.table({"id": [1], "embedding": _vectors([[1, 0]]), "content": ["c"]}), "fl_put_pkey"),
        (pa.table({"embedding": _vectors([[1, 0, 0]]), "content": ["c"]}), "dimensions"),
        (pa.table({"embedding": _vectors([[1, math.nan]]), "content": ["c"]}), "embedding"),
    ]:
        with pytest.raises(REFUSED, match=message):
            _put(fl, "fl_put", bad)
        assert _state() == before, message
    assert pg.execute("SELECT count(*) FROM fl_put").fetchone() == (2,)
