"""Ours against a baseline in one run: interleaved rounds, the ratio's median and spread, and
the Markdown table every benchmark adds a row to.

Absolute figures on a shared machine drift by tens of percent between minutes; a ratio taken
round by round (ours and the baseline measured back to back, their order alternating so
neither always runs on a warmer or a busier machine) cancels most of that drift. The table
quotes the median of the per-round ratios and their min-max as the spread.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from attrs import frozen

M = TypeVar("M")


async def alternate(
    rounds: int, ours: Callable[[], Awaitable[M]], baseline: Callable[[], Awaitable[M]]
) -> list[tuple[M, M]]:
    """``rounds`` pairs of (ours, baseline) measurements, ours first in even rounds and the
    baseline first in odd ones (A B, B A, A B, ...)."""
    pairs = []
    for i in range(rounds):
        if i % 2 == 0:
            a = await ours()
            b = await baseline()
        else:
            b = await baseline()
            a = await ours()
        pairs.append((a, b))
    return pairs


@frozen
class Row:
    """One benchmark's outcome: per-round figures of ours and of its baseline, same unit."""

    name: str
    baseline_name: str
    unit: str
    ours: tuple[float, ...]
    baseline: tuple[float, ...]
    #: what the ratio (ours / baseline) must reach, e.g. ">= 0.8" or "<= 1.5"
    target: str = ""
    note: str = ""

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.ours, self.baseline, strict=True) if b > 0]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")

    @property
    def met(self) -> bool | None:
        if not self.target:
            return None
        op, _, value = self.target.partition(" ")
        return self.ratio >= float(value) if op == ">=" else self.ratio <= float(value)


def from_pairs(
    name: str,
    baseline_name: str,
    unit: str,
    pairs: Sequence[tuple[dict[str, float], dict[str, float]]],
    metric: str,
    target: str = "",
    note: str = "",
) -> Row:
    ours = tuple(a[metric] for a, _ in pairs)
    base = tuple(b[metric] for _, b in pairs)
    return Row(name, baseline_name, unit, ours, base, target, note)


def _figure(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_rows(rows: Sequence[Row]) -> str:
    lines = [
        "| benchmark | ours (median) | baseline (median) | ratio ours/baseline | spread (min-max) | rounds | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratios = r.ratios
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "n/a"
        met = {True: " ✓", False: " ✗", None: ""}[r.met]
        lines.append(
            f"| {r.name} | {_figure(statistics.median(r.ours))} {r.unit}"
            f" | {r.baseline_name}: {_figure(statistics.median(r.baseline))} {r.unit}"
            f" | {r.ratio:.2f} | {spread} | {len(ratios)} | {r.target}{met} |"
        )
    return "\n".join(lines)


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}"
    )


def write_report(path: Path, rows: Sequence[Row], notes: Sequence[str], *, smoke: bool) -> str:
    """The table, when and where it was measured, and each row's note; written to ``path``."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    kind = "smoke run (tiny iteration counts: the figures mean nothing)" if smoke else "full run"
    text = "\n".join(
        [
            f"# Benchmarks against raw baselines ({kind})",
            "",
            f"Measured {stamp} on {machine()}.",
            "Ratio = ours / baseline per round (median of rounds; spread = min-max of the rounds).",
            "",
            format_rows(rows),
            "",
            *(f"- {r.name}: {r.note}" for r in rows if r.note),
            *(f"- {n}" for n in notes),
            "",
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text
