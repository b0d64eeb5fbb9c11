"""The suite's one table (markdown, so it can be pasted as it is) and the details under it."""

from __future__ import annotations

from collections.abc import Sequence

from bench.faults.suite import Outcome

_HEADER = (
    "| scenario | requests | answered | errors by code | lost | doubled | recovery | result |",
    "|---|---:|---:|---|---:|---:|---:|---|",
)


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [*_HEADER]
    for o in outcomes:
        errors = ", ".join(f"{code}: {n}" for code, n in o.errors.items()) or "none"
        recovery = "-" if o.recovery_seconds is None else f"{o.recovery_seconds:.1f} s"
        rows.append(
            f"| {o.scenario} | {o.requests} | {o.answered} | {errors} | {o.lost} | {o.doubled} "
            f"| {recovery} | {'pass' if o.passed else 'FAIL'} |"
        )
    return "\n".join(rows)


def details(outcomes: Sequence[Outcome]) -> str:
    lines = []
    for o in outcomes:
        facts = [
            f"how: {o.how}",
            f"slowest answer {o.max_latency_seconds:.2f} s",
            f"landed but not acknowledged {o.landed_unacked}",
            f"ledger == totals {o.ledger_equals_totals}",
            f"Redis == PostgreSQL {o.redis_equals_postgres}",
            f"viewers on the final board {o.viewers_on_final_board}/{o.viewers}",
            f"revoked tokens refused {o.revoked_refused}",
        ]
        lines.append(f"- {o.scenario}: " + "; ".join(facts))
        lines += [f"  - note: {note}" for note in o.notes]
        lines += [f"  - VIOLATION: {v}" for v in o.violations]
    return "\n".join(lines)
