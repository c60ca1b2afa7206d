#!/usr/bin/env python3
"""pgvector's own regression SQL against a running Valori, statement by
statement.

usage: scripts/pgvector-regress.py [--data ../shared/data] [--show FILE]

Runs each `sql/NAME.sql` of `DATA/pgvector-regress` through
`psql -X -a -q -f` (as pgvector's `make installcheck` does, against the
server that the usual PG* environment variables name, e.g. PGHOST,
PGPORT, PGUSER) and compares each statement's output with pgvector's
`expected/NAME.out`. An error matches when its message matches (psql's
`psql:FILE:LINE:` prefix removed). Prints, per file, the statements whose
output is the same as PostgreSQL's with pgvector, and the total. With
`--show FILE` it also prints each differing statement with both outputs.
This measures compatibility; it is not a test that must pass.
"""

import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def statements(sql):
    """The statements of a file as psql echoes them: one or more lines,
    the last ending with `;` (comments and blank lines are echoed too and
    belong to no statement)."""
    out, current = [], []
    for line in sql.splitlines():
        if not current and (not line.strip() or line.startswith("--")):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(current))
            current = []
    return out


def split(output, stmts):
    """The output after each echoed statement, up to the next one."""
    lines = output.splitlines()
    results, pos = [], 0
    for i, stmt in enumerate(stmts):
        first = stmt.splitlines()[0]
        while pos < len(lines) and lines[pos] != first:
            pos += 1
        pos += len(stmt.splitlines())
        end = pos
        nxt = stmts[i + 1].splitlines()[0] if i + 1 < len(stmts) else None
        while end < len(lines) and lines[end] != nxt:
            end += 1
        body = [re.sub(r"^psql:[^:]*:\d+: ", "", l) for l in lines[pos:end]]
        body = [l for l in body if l.strip() and not l.startswith("--")]
        results.append("\n".join(body))
        pos = end
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--show", default=None)
    a = ap.parse_args()
    d = os.path.join(a.data, "pgvector-regress")
    total_same = total = 0
    for name in sorted(os.listdir(os.path.join(d, "sql"))):
        base = name[:-4]
        sql = open(os.path.join(d, "sql", name)).read()
        expected = open(os.path.join(d, "expected", base + ".out")).read()
        run = subprocess.run(["psql", "-X", "-a", "-q", "-f", os.path.join(d, "sql", name)],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
        # psql writes errors to stderr; interleave them after their
        # statement as the expected file has them, by line number.
        got = merge(run.stdout, run.stderr, sql)
        stmts = statements(sql)
        want, have = split(expected, stmts), split(got, stmts)
        same = sum(1 for w, h in zip(want, have) if w == h)
        total_same += same
        total += len(stmts)
        print(f"{base:22s} {same:4d} of {len(stmts):4d} statements as PostgreSQL + pgvector")
        if a.show == base:
            for s, w, h in zip(stmts, want, have):
                if w != h:
                    print(f"--- {s}\n    expected: {w!r}\n    valori:   {h!r}")
    print(f"{'all':22s} {total_same:4d} of {total:4d}")


def merge(stdout, stderr, sql):
    """stdout with each stderr line placed after the statement that ends
    on the line number psql names."""
    errors = {}
    for line in stderr.splitlines():
        m = re.match(r"^psql:[^:]*:(\d+): (.*)$", line)
        if m:
            errors.setdefault(int(m.group(1)), []).append(m.group(2))
        elif errors:
            errors[max(errors)].append(line)
    sql_lines = sql.splitlines()
    # Statement end line (1-based) -> its echoed last line.
    out, lines = [], stdout.splitlines()
    pending = sorted(errors)
    i = 0
    for end in pending:
        last = sql_lines[end - 1] if end - 1 < len(sql_lines) else None
        while i < len(lines) and lines[i] != last:
            out.append(lines[i])
            i += 1
        if i < len(lines):
            out.append(lines[i])
            i += 1
        out.extend(errors[end])
    out.extend(lines[i:])
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
