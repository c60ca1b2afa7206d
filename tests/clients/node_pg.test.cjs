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
