"""Shared measuring and reporting for the benchmark scripts.

Method: a candidate and its baseline are timed in interleaved rounds (the order alternates every
round, so drift in clock speed or cache state hits both alike), each round running the operation
``number`` times with the garbage collector paused, after a warm-up. A round gives the time per
operation; the report shows the median over rounds and the spread (max − min over the median), and
the ratio of the two medians expressed as a *rate* ratio: ``baseline time / candidate time``
(> 1: the candidate is faster). At least five rounds are always run.

Output: a table (rich if installed), ``benchmarks/results/NAME.json`` with every sample, a PNG plot
beside it when matplotlib is importable, and last the ``RATIO name=value`` lines that CI and
people grep for. ``--quick`` runs a smoke-sized version (correctness of the script, not numbers).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_RESULTS = Path(tempfile.gettempdir()) / "pynvmetcp-bench-quick"
MIN_ROUNDS = 5


def parse_args(doc: str | None, argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few rounds, few calls")
    ap.add_argument("--rounds", type=int, help=f"interleaved rounds (at least {MIN_ROUNDS})")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply the calls per round (longer rounds, steadier numbers)")
    ap.add_argument("--out", type=Path, help=f"where NAME.json/NAME.png go (default {RESULTS}; "
                    f"with --quick, {QUICK_RESULTS})")
    ap.add_argument("--no-plot", action="store_true", help="skip the PNG")
    args = ap.parse_args(argv)
    if args.out is None:  # smoke runs never overwrite the recorded results
        args.out = QUICK_RESULTS if args.quick else RESULTS
    if args.rounds is None:
        args.rounds = MIN_ROUNDS if args.quick else 15
    args.rounds = max(args.rounds, MIN_ROUNDS)
    return args


def _time_round(fn: Callable[[], object], number: int) -> float:
    """Seconds for ``number`` calls of ``fn`` with the garbage collector paused."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - t0
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class Comparison:
    """One row: a candidate and its baseline on the same input, time per operation in ns."""

    name: str
    candidate: str
    baseline: str
    candidate_ns: list[float] = field(default_factory=list)
    baseline_ns: list[float] = field(default_factory=list)
    unit: str = "op"
    bytes_per_op: int = 0

    @staticmethod
    def _median(xs: list[float]) -> float:
        return statistics.median(xs)

    @property
    def candidate_median(self) -> float:
        return self._median(self.candidate_ns)

    @property
    def baseline_median(self) -> float:
        return self._median(self.baseline_ns)

    @staticmethod
    def spread(xs: list[float]) -> float:
        """(max − min) / median, as a fraction."""
        m = statistics.median(xs)
        return (max(xs) - min(xs)) / m if m else 0.0

    @property
    def ratio(self) -> float:
        """Candidate rate / baseline rate (= baseline time / candidate time)."""
        return self.baseline_median / self.candidate_median

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(candidate_median_ns=self.candidate_median, baseline_median_ns=self.baseline_median,
                 candidate_spread=self.spread(self.candidate_ns),
                 baseline_spread=self.spread(self.baseline_ns), ratio=self.ratio)
        return d


def compare(name: str, candidate: tuple[str, Callable[[], object]],
            baseline: tuple[str, Callable[[], object]], *, rounds: int, number: int,
            ops_per_call: int = 1, bytes_per_op: int = 0, unit: str = "op") -> Comparison:
    """Time ``candidate`` against ``baseline`` in interleaved rounds; ns per operation."""
    cname, cfn = candidate
    bname, bfn = baseline
    number = max(1, number)
    for fn in (cfn, bfn):  # warm up: imports, caches, first allocations
        _time_round(fn, max(1, number // 5))
    row = Comparison(name, cname, bname, unit=unit, bytes_per_op=bytes_per_op)
    per_op = 1e9 / (number * ops_per_call)
    total = max(rounds, MIN_ROUNDS)
    with progress(f"{name}: rounds", total) as advance:
        for r in range(total):
            order = ((cfn, row.candidate_ns), (bfn, row.baseline_ns))
            for fn, samples in (order if r % 2 == 0 else order[::-1]):
                samples.append(_time_round(fn, number) * per_op)
            advance()
    return row


@contextlib.contextmanager
def progress(description: str, total: int):
    """A transient progress bar on stderr for long runs (nothing when stderr is not a terminal
    or rich is missing); yields ``advance()``."""
    try:
        from rich.console import Console
        from rich.progress import Progress
    except ImportError:
        yield lambda: None
        return
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def _fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def _rate(row: Comparison, ns: float) -> str:
    if row.bytes_per_op:
        return f"{row.bytes_per_op / ns:.2f} GB/s"  # bytes per ns = GB/s
    return f"{1e3 / ns:.2f} M{row.unit}/s"


class Report:
    """Collects comparisons and ratios for one benchmark script, then prints and saves them."""

    def __init__(self, name: str, question: str, args: argparse.Namespace,
                 method: str | None = None) -> None:
        self.name = name
        self.method = method
        self.question = question
        self.args = args
        self.rows: list[Comparison] = []
        self.ratios: dict[str, float] = {}
        self.notes: list[str] = []

    def add(self, row: Comparison) -> Comparison:
        self.rows.append(row)
        return row

    def ratio(self, name: str, value: float) -> None:
        self.ratios[name] = value

    def note(self, text: str) -> None:
        self.notes.append(text)

    # ---- output ----
    def _table(self) -> None:
        if not self.rows:  # a benchmark that counts rather than times has only notes
            return
        head = ["benchmark", "candidate", "median", "spread", "baseline", "median", "spread",
                "ratio"]

        def cell(r: Comparison, ns: float) -> str:
            return f"{_fmt_ns(ns)} ({_rate(r, ns)})"

        body = [[r.name, r.candidate, cell(r, r.candidate_median),
                 f"{100 * r.spread(r.candidate_ns):.0f}%", r.baseline, cell(r, r.baseline_median),
                 f"{100 * r.spread(r.baseline_ns):.0f}%", f"{r.ratio:.2f}×"] for r in self.rows]
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
            for line in [head, *body]:
                print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))
            return
        table = Table(title=self.question, title_justify="left")
        for h in head:
            table.add_column(h, justify="right" if h in ("median", "spread", "ratio") else "left")
        for line in body:
            table.add_row(*line)
        Console(width=max(160, os.get_terminal_size().columns if sys.stdout.isatty() else 0)
                ).print(table)

    def _save(self) -> Path:
        out: Path = self.args.out
        out.mkdir(parents=True, exist_ok=True)
        data = {
            "benchmark": self.name,
            "question": self.question,
            "quick": self.args.quick,
            "rounds": self.args.rounds,
            "python": sys.version.split()[0],
            "implementation": platform.python_implementation(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "method": "interleaved rounds, median ns per operation; "
                      "ratio = baseline time / candidate time",
            "rows": [r.as_dict() for r in self.rows],
            "ratios": self.ratios,
            "notes": self.notes,
        }
        path = out / f"{self.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)
        return path

    def _plot(self) -> Path | None:
        if self.args.no_plot or not self.rows:
            return None
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("(matplotlib not installed: no plot)")
            return None
        n = len(self.rows)
        fig, ax = plt.subplots(figsize=(min(14, max(6, 0.7 * n + 2)), 5))
        xs = range(n)
        w = 0.38
        for off, label, pick in ((-w / 2, "candidate", lambda r: r.candidate_ns),
                                 (w / 2, "baseline", lambda r: r.baseline_ns)):
            med = [statistics.median(pick(r)) for r in self.rows]
            lo = [m - min(pick(r)) for m, r in zip(med, self.rows)]
            hi = [max(pick(r)) - m for m, r in zip(med, self.rows)]
            ax.bar([x + off for x in xs], med, w, yerr=[lo, hi], capsize=3,
                   label=f"{label} (left/right of each pair)")
        for x, r in zip(xs, self.rows):
            ax.annotate(f"{r.ratio:.2f}×", (x, max(r.candidate_median, r.baseline_median)),
                        ha="center", va="bottom", fontsize=8, xytext=(0, 4),
                        textcoords="offset points")
        ax.set_xticks(list(xs), [f"{r.name}\n{r.candidate} vs {r.baseline}" for r in self.rows],
                      rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("ns per operation (median, min–max)")
        ax.set_yscale("log")
        ax.set_title(self.question, fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = self.args.out / f"{self.name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def finish(self) -> int:
        """Print the table and notes, save JSON (and PNG); the RATIO lines come last."""
        print(f"question: {self.question}")
        method = self.method or (f"{self.args.rounds} interleaved rounds, median per "
                                 f"operation")
        print(f"method: {method}"
              f"{' (QUICK: smoke run, numbers not meaningful)' if self.args.quick else ''}")
        self._table()
        for n in self.notes:
            print(f"note: {n}")
        print(f"results: {self._save()}")
        png = self._plot()
        if png:
            print(f"plot: {png}")
        for name, value in self.ratios.items():
            print(f"RATIO {name}={value:.3f}")
        return 0


def geomean(xs: list[float]) -> float:
    return statistics.geometric_mean(xs)
