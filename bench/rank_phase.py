"""The `rank` phase of `make bench` (issue 18): personal live rank at the issue's sizes (1,000,000
ranked players, 10,000 online subscribers, 500 writes/s by default), measured by bench.rank_watch
against the stack's Redis under a key prefix of its own (deleted afterwards), with the real apply
script and stream_service's real RankHub in the bench process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench import rank_watch


@dataclass(frozen=True)
class RankSizes:
    players: int
    subscribers: int
    write_rate: float
    tick_seconds: float
    seconds: float


async def measure(redis_url: str, sizes: RankSizes) -> dict[str, Any]:
    """One bench.rank_watch run (its other options at their defaults); its report."""
    args = rank_watch.build_parser().parse_args(
        [
            *("--redis-url", redis_url),
            *("--players", str(sizes.players)),
            *("--subscribers", str(sizes.subscribers)),
            *("--write-rate", str(sizes.write_rate)),
            *("--tick-seconds", str(sizes.tick_seconds)),
            *("--seconds", str(sizes.seconds)),
        ]
    )
    print(
        f"bench: personal rank: {sizes.players:,} players, {sizes.subscribers:,} subscribers, "
        f"{sizes.write_rate:g} writes/s for {sizes.seconds:g}s"
    )
    report = await rank_watch.run(args)
    print(
        f"bench: personal rank: ticker {report['ticker_redis_commands_per_second']:,} Redis "
        f"commands/s, {_percent(report['ticker_cpu_share_of_a_core'])} of a core; p99 self "
        f"{report['self_p99_ms']} ms, overtaken {report['overtaken_p99_ms']} ms"
    )
    return report


def print_table(results: list[dict[str, Any]]) -> None:
    """The rank phase's figures, one row per run."""
    if not results:
        return
    print()
    print(
        "personal live rank (bench.rank_watch): ticker Redis commands and CPU, score change to "
        "RankUpdate (ms)"
    )
    print(
        f"{'players':>10}{'subscribers':>13}{'writes/s':>10}{'passes':>8}{'cmds/s':>10}"
        f"{'ticker CPU':>12}{'Redis CPU':>11}{'self p50':>10}{'self p99':>10}"
        f"{'overt. p50':>12}{'overt. p99':>12}"
    )
    for r in results:
        writes_per_s = r["writes"] / max(r["seconds"], 1e-9)
        print(
            f"{r['players']:>10,}{r['subscribers']:>13,}{writes_per_s:>10.0f}"
            f"{r['ticker_passes']:>8}{r['ticker_redis_commands_per_second']:>10,}"
            f"{_percent(r['ticker_cpu_share_of_a_core']):>12}"
            f"{_percent(r['redis_cpu_share_of_a_core']):>11}"
            f"{_ms(r['self_p50_ms']):>10}{_ms(r['self_p99_ms']):>10}"
            f"{_ms(r['overtaken_p50_ms']):>12}{_ms(r['overtaken_p99_ms']):>12}"
        )


def _percent(share: float) -> str:
    return f"{100 * share:.1f} %"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
