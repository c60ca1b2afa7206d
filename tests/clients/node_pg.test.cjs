// node-postgres (`pg`) against the Postgres front end: simple queries,
// parameterised (extended) queries with untyped text parameters, vectors
// in pgvector's text form, and errors with their SQLSTATE. Expected
// values are computed here.
const test = require('node:test');
const assert = require('node:assert');
const { Client } = require('pg');

function client(extra = {}) {
  return new Client({
    host: process.env.VALORI_PG_HOST,
    port: Number(process.env.VALORI_PG_PORT),
    user: 'tester',
    database: 'valori',
    ...extra,
  });
}

test('node pg: create, insert, nearest neighbours, errors', async () => {
  const c = client();
  await c.connect();
  try {
    await c.query('DROP TABLE IF EXISTS node_docs');
    await c.query('CREATE TABLE node_docs (id BIGINT PRIMARY KEY, vec VECTOR(2), tag BIGINT, metadata JSONB)');
    const rows = [[1, [3, 4], 1], [2, [1, 1], 1], [3, [-2, 0], 2]];
    for (const [id, v, tag] of rows) {
      const r = await c.query('INSERT INTO node_docs (id, vec, tag, metadata) VALUES ($1, $2, $3, $4)',
        [id, JSON.stringify(v), tag, JSON.stringify({ id })]);
      assert.strictEqual(r.rowCount, 1);
    }
    const q = [0.5, 0.5];
    const want = rows
      .map(([id, v]) => ({ id, d: Math.hypot(v[0] - q[0], v[1] - q[1]) }))
      .sort((a, b) => a.d - b.d || a.id - b.id);
    const res = await c.query('SELECT id, vec, vec <-> $1 AS d FROM node_docs ORDER BY d, id', [JSON.stringify(q)]);
    // int8 arrives as a string in node-postgres; float8 as a number.
    assert.deepStrictEqual(res.rows.map((r) => Number(r.id)), want.map((w) => w.id));
    res.rows.forEach((r, i) => assert.ok(Math.abs(r.d - want[i].d) < 1e-12, `${r.d} vs ${want[i].d}`));
    const stored = Object.fromEntries(rows.map(([id, v]) => [id, v]));
    for (const r of res.rows) {
      assert.deepStrictEqual(JSON.parse(r.vec), stored[Number(r.id)]);
    }
    const simple = await c.query('SELECT count(*) AS n FROM node_docs WHERE tag = 1');
    assert.strictEqual(Number(simple.rows[0].n), 2);
    await assert.rejects(c.query('INSERT INTO node_docs (id, vec) VALUES (1, \'[0,0]\')'), (e) => e.code === '23505');
    await assert.rejects(c.query('SELECT * FROM missing_table'), (e) => e.code === '42P01');
    await assert.rejects(c.query('SELECT l2(vec, $1) FROM node_docs', ['[1,nope]']), (e) => e.code === '22P02');
  } finally {
    await c.end();
  }
});

// pgvector's README for node-postgres, unchanged: registerTypes, a table
// as pgvector users declare it, inserts with toSql, a filtered nearest-
// neighbour query, an upsert of the vector and a delete. Expected rows
// and distances are computed here.
test('node pg with pgvector: README flow on a declared table', async () => {
  const pgvector = require('pgvector/pg');
  const c = client();
  await c.connect();
  try {
    await c.query('CREATE EXTENSION IF NOT EXISTS vector');
    await pgvector.registerTypes(c);
    await c.query('DROP TABLE IF EXISTS node_items');
    await c.query('CREATE TABLE node_items (id bigserial PRIMARY KEY, content text, category_id int, embedding vector(3))');
    const items = [['a', 1, [1, 1, 1]], ['b', 2, [2, 2, 2]], ['c', 1, [1, 1, 2]]];
    for (const [content, category, embedding] of items) {
      const r = await c.query('INSERT INTO node_items (content, category_id, embedding) VALUES ($1, $2, $3) RETURNING id',
        [content, category, pgvector.toSql(embedding)]);
      assert.strictEqual(r.rows.length, 1);
    }
    const q = [1, 1, 1];
    const dist = (v) => Math.hypot(...v.map((x, i) => x - q[i]));
    const want = items
      .map(([content, category, v], i) => ({ id: i + 1, content, category, v, d: dist(v) }))
      .filter((w) => w.category === 1)
      .sort((a, b) => a.d - b.d);
    const res = await c.query('SELECT id, content, embedding, embedding <-> $1 AS d FROM node_items WHERE category_id = $2 ORDER BY embedding <-> $1 LIMIT 5',
      [pgvector.toSql(q), 1]);
    assert.deepStrictEqual(res.rows.map((r) => r.content), want.map((w) => w.content));
    // registerTypes parses the vector column into numbers.
    assert.deepStrictEqual(res.rows.map((r) => r.embedding), want.map((w) => w.v));
    res.rows.forEach((r, i) => assert.ok(Math.abs(r.d - want[i].d) < 1e-9, `${r.d} vs ${want[i].d}`));
    // Upsert of the vector: row 2 moves to [1,1,1].
    const up = await c.query('INSERT INTO node_items (id, content, category_id, embedding) VALUES (2, $1, 1, $2) ' +
      'ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, category_id = EXCLUDED.category_id RETURNING id, embedding',
    ['b', pgvector.toSql(q)]);
    assert.deepStrictEqual(up.rows[0].embedding, q);
    const near = await c.query('SELECT id FROM node_items ORDER BY embedding <-> $1, id LIMIT 2', [pgvector.toSql(q)]);
    assert.deepStrictEqual(near.rows.map((r) => Number(r.id)), [1, 2]);
    const del = await c.query('DELETE FROM node_items WHERE content = $1', ['c']);
    assert.strictEqual(del.rowCount, 1);
    const count = await c.query('SELECT count(*) AS n FROM node_items');
    assert.strictEqual(Number(count.rows[0].n), 2);
  } finally {
    await c.end();
  }
});
