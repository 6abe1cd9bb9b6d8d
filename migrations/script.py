"""Run a hand-written SQL script from a migration, one statement at a time.

asyncpg prepares every statement, and a prepared statement holds one command;
so a script is split on `;` outside quotes, comments and `$$` bodies.
"""

from __future__ import annotations

from alembic import op


def split_sql(script: str) -> list[str]:
    statements: list[str] = []
    buf: list[str] = []
    i, n = 0, len(script)
    in_single = in_dollar = in_comment = False
    while i < n:
        c = script[i]
        two = script[i : i + 2]
        if in_comment:
            if c == "\n":
                in_comment = False
            i += 1
            continue
        if not in_single and not in_dollar and two == "--":
            in_comment = True
            i += 2
            continue
        if not in_single and two == "$$":
            in_dollar = not in_dollar
            buf.append(two)
            i += 2
            continue
        if not in_dollar and c == "'":
            in_single = not in_single
        if c == ";" and not in_single and not in_dollar:
            stmt = "".join(buf).strip()
            if stmt:
                statements.append(stmt)
            buf = []
        else:
            buf.append(c)
        i += 1
    tail = "".join(buf).strip()
    if tail:
        statements.append(tail)
    return statements


def run(script: str) -> None:
    for statement in split_sql(script):
        op.execute(statement)
