#!/usr/bin/env bash
# psql against the Postgres front end: DDL and writes, \copy from stdin and
# to stdout, files in csv and binary,
# a distance query checked against values computed by Python, \l, \du, \dt, \d, \d+, \di and \ds,
# \dt+, \di+ and \ds+ with the relations' sizes,
# SCRAM logins and the read role. Exits non-zero on the first failure.
set -euo pipefail
q() { psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h "$VALORI_PG_HOST" -p "$VALORI_PG_PORT" -U tester -d valori "$@"; }
fail() { echo "psql: $*" >&2; exit 1; }

q -c "CREATE EXTENSION IF NOT EXISTS vector"
q -c "DROP TABLE IF EXISTS psql_docs"
q -c "CREATE TABLE psql_docs (id BIGINT PRIMARY KEY, vec VECTOR(2), tag BIGINT, metadata BYTEA) WITH (metric = 'l2')"
q -c "INSERT INTO psql_docs VALUES (1, '[3,4]', 1, '\\x01ff'), (2, '[0,1]', 2, NULL)"
printf '3,"[1,1]",3\n' | q -c "\\copy psql_docs (id, vec, tag) FROM pstdin WITH (FORMAT csv)"

# \copy … to: COPY … TO STDOUT in text, csv and binary, compared with the
# rows written above; the binary file loads into another table, read back
# with SELECT.
copy_dir=$(mktemp -d)
got=$(q -c "\\copy (SELECT id, vec, tag FROM psql_docs ORDER BY id) to stdout")
want=$(printf '1\t[3,4]\t1\n2\t[0,1]\t2\n3\t[1,1]\t3')
[ "$got" = "$want" ] || fail "\\copy to stdout: got [$got], want [$want]"
q -c "\\copy psql_docs (id, vec) to '$copy_dir/docs.csv' with (format csv, header, delimiter ';')"
got=$(head -1 "$copy_dir/docs.csv"; tail -n +2 "$copy_dir/docs.csv" | sort)
want=$(printf 'id;vec\n1;[3,4]\n2;[0,1]\n3;[1,1]')
[ "$got" = "$want" ] || fail "\\copy to csv: got [$got], want [$want]"
q -c "\\copy psql_docs (id, vec, tag) to '$copy_dir/docs.bin' with (format binary)"
[ "$(head -c 11 "$copy_dir/docs.bin" | od -An -c | tr -s ' ')" = "$(printf 'PGCOPY\n\377\r\n\0' | od -An -c | tr -s ' ')" ] \
    || fail "\\copy binary: no PGCOPY signature"
q -c "DROP TABLE IF EXISTS psql_docs_copy"
q -c "CREATE TABLE psql_docs_copy (id BIGINT PRIMARY KEY, vec VECTOR(2), tag BIGINT, metadata BYTEA)"
q -c "\\copy psql_docs_copy (id, vec, tag) from '$copy_dir/docs.bin' with (format binary)"
got=$(q -c "SELECT id, vec, tag FROM psql_docs_copy ORDER BY id")
want=$(printf '1|[3,4]|1\n2|[0,1]|2\n3|[1,1]|3')
[ "$got" = "$want" ] || fail "binary \\copy round trip: got [$got], want [$want]"
rm -rf "$copy_dir"

got=$(q -c "SELECT id, vec <-> '[0,0]' FROM psql_docs ORDER BY 2, id")
want=$(python3 -c "
import math
rows = {1: (3, 4), 2: (0, 1), 3: (1, 1)}
for d, i in sorted((math.hypot(*v), i) for i, v in rows.items()):
    s = repr(d)  # Postgres prints float8 in the shortest round-trip form, without '.0'
    print(f'{i}|{s[:-2] if s.endswith(\".0\") else s}')
")
[ "$got" = "$want" ] || fail "distances: got [$got], want [$want]"

got=$(q -c "SELECT metadata FROM psql_docs WHERE id = 1")
[ "$got" = '\x01ff' ] || fail "bytea metadata: got [$got]"

got=$(q -c "\\dt")
echo "$got" | grep -qx 'public|psql_docs|table|valori' || fail "\\dt: [$got]"
# \d on pgvector's README table: the columns with their defaults and the
# indexes footer, as Postgres 16 with pgvector prints them (a bigserial's
# default is its sequence's nextval, `DEFAULT 3` prints bare), with the
# btree index on category_id under Postgres's name for it.
q -c "DROP TABLE IF EXISTS psql_items"
q -c "CREATE TABLE psql_items (id bigserial PRIMARY KEY, content text NOT NULL, category_id int DEFAULT 3, embedding vector(3))"
q -c "CREATE INDEX ON psql_items USING hnsw (embedding vector_l2_ops)"
q -c "CREATE INDEX ON psql_items (category_id)"
got=$(psql -X -q -A -v ON_ERROR_STOP=1 -h "$VALORI_PG_HOST" -p "$VALORI_PG_PORT" -U tester -d valori -c "\\d psql_items")
want='Table "public.psql_items"
Column|Type|Collation|Nullable|Default
id|bigint||not null|nextval('"'"'psql_items_id_seq'"'"'::regclass)
content|text||not null|
category_id|integer|||3
embedding|vector(3)|||
Indexes:
    "psql_items_pkey" PRIMARY KEY, btree (id)
    "psql_items_category_id_idx" btree (category_id)
    "psql_items_embedding_idx" hnsw (embedding vector_l2_ops)'
[ "$got" = "$want" ] || fail "\\d psql_items: got [$got], want [$want]"
got=$(q -c "\\ds")
echo "$got" | grep -qx 'public|psql_items_id_seq|sequence|valori' || fail "\\ds: [$got]"
# \d+ adds Storage, Compression, Stats target and Description columns and
# the access method footer (psql's query lists the table's options with
# `pg_catalog.unnest` of its toast table's); the storage is Postgres's
# (plain for fixed-length types, extended for text, external for
# pgvector's vector, which pgvector declares STORAGE = external).
got=$(psql -X -q -A -v ON_ERROR_STOP=1 -h "$VALORI_PG_HOST" -p "$VALORI_PG_PORT" -U tester -d valori -c "\\d+ psql_items") \
    || fail "\\d+ psql_items failed"
expect() { echo "$got" | grep -qxF -- "$2" || fail "$1: no line [$2] in [$got]"; }
expect '\d+ header' 'Column|Type|Collation|Nullable|Default|Storage|Compression|Stats target|Description'
expect '\d+ id' "id|bigint||not null|nextval('psql_items_id_seq'::regclass)|plain|||"
expect '\d+ content' 'content|text||not null||extended|||'
expect '\d+ category_id' 'category_id|integer|||3|plain|||'
expect '\d+ embedding' 'embedding|vector(3)||||external|||'
expect '\d+ primary key' '    "psql_items_pkey" PRIMARY KEY, btree (id)'
expect '\d+ btree index' '    "psql_items_category_id_idx" btree (category_id)'
expect '\d+ hnsw index' '    "psql_items_embedding_idx" hnsw (embedding vector_l2_ops)'
expect '\d+ access method' 'Access method: heap'
# \di lists the three indexes of the table (key, btree, HNSW) with their
# table (\ds, above, the bigserial's sequence).
got=$(q -c "\\di")
for index in psql_items_pkey psql_items_category_id_idx psql_items_embedding_idx; do
    expect "\\di $index" "public|$index|index|valori|psql_items"
done

# \dt+, \di+ and \ds+ add Persistence, Access method and Size (psql's
# query calls pg_size_pretty(pg_table_size(oid))). The sizes are the
# bytes Valori holds, as docs/sql.md ("Sizes of relations") counts them:
# a table per row 17 bytes (id, tag, tombstone), 4 per vector component
# and its metadata, plus per declared scalar column a validity byte and the
# value; a btree index per live row the key and a 4-byte row number; a
# sequence 8 bytes. pg_size_pretty prints them in bytes below 10240.
q -c "INSERT INTO psql_items (content, category_id, embedding) VALUES ('a', 1, '[1,0,0]'), ('bb', NULL, '[0,1,0]')"
docs_bytes=$(( 3 * (17 + 2 * 4) + 2 ))  # psql_docs: 3 rows of vector(2), metadata \x01ff
items_bytes=$(( 2 * (17 + 3 * 4) + 2 * (1 + 8) + (2 + 1 + 2) + 2 * (1 + 4) ))  # id bigint, content text, category_id int
got=$(q -c "\\dt+")
expect '\dt+ psql_docs' "public|psql_docs|table|valori|permanent|heap|$docs_bytes bytes|"
expect '\dt+ psql_items' "public|psql_items|table|valori|permanent|heap|$items_bytes bytes|"
got=$(q -c "\\di+")
expect '\di+ pkey' "public|psql_items_pkey|index|valori|psql_items|permanent|btree|$(( 2 * (8 + 4) )) bytes|"
expect '\di+ btree' "public|psql_items_category_id_idx|index|valori|psql_items|permanent|btree|$(( 2 * (4 + 4) )) bytes|"
# The HNSW graph takes rows in whole blocks: two rows are not in it yet.
expect '\di+ hnsw' "public|psql_items_embedding_idx|index|valori|psql_items|permanent|hnsw|0 bytes|"
got=$(q -c "\\ds+")
expect '\ds+ sequence' "public|psql_items_id_seq|sequence|valori|permanent|8 bytes|"
got=$(q -c "SELECT pg_size_pretty(10239::bigint), pg_size_pretty(10240::bigint), pg_size_pretty(10485248::bigint), pg_size_pretty(1000000.5)")
[ "$got" = "10239 bytes|10 kB|10 MB|977 kB" ] || fail "pg_size_pretty: [$got]"

# CREATE INDEX with another operator class gives the table that metric:
# `<=>` is then the engine's search (EXPLAIN shows it), and the nearest row
# to [1,0] by cosine is 3 ([1,1]: 1 - 1/sqrt 2 = 0.29; [3,4]: 0.4; [0,1]: 1).
q -c "CREATE INDEX ON psql_docs USING hnsw (vec vector_cosine_ops) WITH (m = 4)"
got=$(q -c "EXPLAIN SELECT id FROM psql_docs ORDER BY vec <=> '[1,0]' LIMIT 1")
echo "$got" | grep -q "ValoriKnnExec.*distance=cosine" || fail "CREATE INDEX cosine: [$got]"
got=$(q -c "SELECT id FROM psql_docs ORDER BY vec <=> '[1,0]' LIMIT 1")
[ "$got" = "3" ] || fail "nearest by cosine: [$got]"

# \l lists the one database (psql reads pg_database's ICU columns, NULL
# for the libc provider); \du the owner role, a member of no role
# (pg_auth_members is empty).
got=$(q -c "\\l")
[ "$got" = "valori|valori|UTF8|C|C||libc|" ] || fail "\\l: [$got]"
got=$(q -c "\\du")
[ "$got" = "valori|Superuser|{}" ] || fail "\\du: [$got]"

got=$(q -c "SET valori.ef_search = 48" -c "SHOW valori.ef_search")
[ "$got" = "48" ] || fail "SHOW valori.ef_search: [$got]"

# PREPARE / EXECUTE in one session: the nearest row to [3,3] by L2 with
# tag > 1 is 3 ([1,1]: 2.83; [0,1]: 3.61; [3,4] has tag 1).
got=$(q -c "PREPARE near (vector, bigint) AS SELECT id FROM psql_docs WHERE tag > \$2 ORDER BY vec <-> \$1 LIMIT 1" \
    -c "EXECUTE near('[3,3]', 1)" -c "DEALLOCATE near")
[ "$got" = "3" ] || fail "PREPARE/EXECUTE: [$got]"

# SCRAM: a wrong key is refused, the read role cannot write.
a() { PGPASSWORD="$2" psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h "$VALORI_PG_HOST" -p "$VALORI_PG_AUTH_PORT" -U "$1" -d valori "${@:3}"; }
a alice s3cret -c "DROP TABLE IF EXISTS psql_auth" -c "CREATE TABLE psql_auth (id BIGINT, vec VECTOR(1))"
if a alice wrong -c "SELECT 1" 2>/tmp/psql-auth.err; then fail "a wrong password logged in"; fi
grep -q "28P01" /tmp/psql-auth.err || grep -qi "password" /tmp/psql-auth.err || fail "wrong password error: $(cat /tmp/psql-auth.err)"
if a bob r3ad -c "INSERT INTO psql_auth VALUES (1, '[1]')" 2>/tmp/psql-ro.err; then fail "the read role wrote"; fi
grep -q "25006" /tmp/psql-ro.err || fail "read role error: $(cat /tmp/psql-ro.err)"
[ "$(a bob r3ad -c "SELECT count(*) FROM psql_auth")" = "0" ] || fail "read role count"
echo "psql: ok"
