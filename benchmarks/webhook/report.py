"""The table: every figure set against the baseline of the same run and judged by its target."""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

from benchmarks.webhook.scenarios import Figures, SerialFigure, paired_ratio, round_ratios
from benchmarks.webhook.settings import (
    IDLE_TARGET_PCT,
    LOG_TARGET,
    RSS_TARGET_MB,
    RUNS_TARGET,
    SERIAL_TARGET,
    START_TARGET_MS,
)

HEADER = ("figure", "s3syncer", "quart-trio", "baseline", "ratio / target", "result")


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    figure: str
    s3syncer: str
    quart: str
    baseline: str
    ratio: str
    verdict: str

    def cells(self) -> tuple[str, ...]:
        """The cells in the order of ``HEADER``."""
        return (self.figure, self.s3syncer, self.quart, self.baseline, self.ratio, self.verdict)


def verdict(ok: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if ok else "FAIL"


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def _range(values: Sequence[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def _serial_rows(figs: dict[str, SerialFigure]) -> Iterator[Row]:
    s3, qt, base = figs["s3syncer"], figs["quart"], figs["baseline"]
    ratio = paired_ratio(figs, "s3syncer", "baseline")
    quart_ratio = paired_ratio(figs, "quart", "baseline")
    yield Row(
        "1. serial req/s (new connection each)",
        f"{s3.rate:.0f}",
        f"{qt.rate:.0f} ({quart_ratio:.2f}x)",
        f"{base.rate:.0f}",
        f"{ratio:.2f}x (>= {SERIAL_TARGET})",
        verdict(ratio >= SERIAL_TARGET),
    )
    yield Row(
        "1. serial: ratio per round (min-max)",
        _range(round_ratios(figs, "s3syncer", "baseline")),
        _range(round_ratios(figs, "quart", "baseline")),
        "1.00",
        f"{len(s3.rates)} rounds",
        "info",
    )
    yield Row(
        "1. serial: server CPU per request, us",
        f"{s3.cpu_per_request_us:.0f}",
        f"{qt.cpu_per_request_us:.0f}",
        f"{base.cpu_per_request_us:.0f}",
        f"{s3.cpu_per_request_us / base.cpu_per_request_us:.2f}x",
        "info",
    )
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        ms = {name: 1000 * percentile(fig.latencies, fraction) for name, fig in figs.items()}
        yield Row(
            f"1. serial latency {label} ms",
            f"{ms['s3syncer']:.2f}",
            f"{ms['quart']:.2f}",
            f"{ms['baseline']:.2f}",
            f"{ms['s3syncer'] / ms['baseline']:.2f}x",
            "info",
        )


def _burst_rows(figures: Figures) -> Iterator[Row]:
    b3, bq, bb = (figures.bursts[name] for name in ("s3syncer", "quart", "baseline"))
    again = figures.bursts["s3syncer-again"]
    yield Row(
        "2. burst wrk -t2 -c50 req/s",
        f"{b3.wrk.rate:.0f}",
        f"{bq.wrk.rate:.0f}",
        f"{bb.wrk.rate:.0f}",
        f"{b3.wrk.rate / bb.wrk.rate:.2f}x",
        "info",
    )
    yield Row(
        "2. burst non-2xx answers / socket errors",
        f"{b3.wrk.non_2xx} / {b3.wrk.socket_errors} of {b3.wrk.requests}",
        f"{bq.wrk.non_2xx} / {bq.wrk.socket_errors}",
        f"{bb.wrk.non_2xx} / {bb.wrk.socket_errors}",
        "0 expected",
        verdict(b3.wrk.non_2xx == 0 and b3.wrk.socket_errors == 0),
    )
    yield Row(
        "2. burst RSS growth MB",
        f"{b3.rss_growth_mb:+.2f} ({b3.rss_before_kib / 1024:.1f} -> "
        f"{b3.rss_after_kib / 1024:.1f} MiB)",
        f"{bq.rss_growth_mb:+.2f}",
        f"{bb.rss_growth_mb:+.2f}",
        f"<= {RSS_TARGET_MB:g} MB",
        verdict(b3.rss_growth_mb <= RSS_TARGET_MB),
    )
    yield Row(
        "2. second burst: RSS growth MB / runs",
        f"{again.rss_growth_mb:+.2f} / {again.runs}",
        "-",
        "-",
        "high-water or leak?",
        "info",
    )
    yield Row(
        "2. burst runs (one running + follow-ups)",
        str(b3.runs),
        "-",
        "-",
        f"<= {RUNS_TARGET}",
        verdict(b3.runs <= RUNS_TARGET),
    )
    yield Row(
        "2. burst log bytes written",
        str(b3.log_bytes),
        "-",
        "-",
        f"<= {LOG_TARGET // 1024} KiB",
        verdict(b3.log_bytes <= LOG_TARGET),
    )
    unique = figures.unique
    if unique is None:
        return
    yield Row(
        "2b. burst, unique event ids: RSS growth MB",
        f"{unique.rss_growth_mb:+.2f} ({unique.wrk.requests} events)",
        "-",
        "-",
        f"<= {RSS_TARGET_MB:g} MB",
        verdict(unique.rss_growth_mb <= RSS_TARGET_MB),
    )
    yield Row(
        "2b. burst, unique event ids: runs / log bytes",
        f"{unique.runs} / {unique.log_bytes}",
        "-",
        "-",
        f"<= {RUNS_TARGET} / <= {LOG_TARGET // 1024} KiB",
        verdict(unique.runs <= RUNS_TARGET and unique.log_bytes <= LOG_TARGET),
    )


def _start_rows(figures: Figures) -> Iterator[Row]:
    over_ms = [1000 * v for v in figures.start.over_delay]
    spawn_ms = [1000 * v for v in figures.start.spawn]
    yield Row(
        f"3. trigger-to-start minus delay, p50 ms (n={len(over_ms)})",
        f"{statistics.median(over_ms):.1f}",
        "-",
        f"{statistics.median(spawn_ms):.1f} (bare spawn)",
        f"<= {START_TARGET_MS:g} ms",
        verdict(statistics.median(over_ms) <= START_TARGET_MS),
    )
    yield Row(
        "3. trigger-to-start minus delay, max ms",
        f"{max(over_ms):.1f}",
        "-",
        f"{max(spawn_ms):.1f} (bare spawn)",
        f"<= {START_TARGET_MS:g} ms",
        verdict(max(over_ms) <= START_TARGET_MS),
    )
    idle = figures.idle_pct
    yield Row(
        "3. idle CPU % of one core",
        f"{idle['s3syncer']:.2f}",
        f"{idle['quart']:.2f}",
        f"{idle['baseline']:.2f}",
        f"< {IDLE_TARGET_PCT:g}%",
        verdict(idle["s3syncer"] < IDLE_TARGET_PCT),
    )


def build_rows(figures: Figures) -> list[Row]:
    """The table, s3syncer set against the baseline of the same run."""
    return [*_serial_rows(figures.serial), *_burst_rows(figures), *_start_rows(figures)]


def numbers(figures: Figures) -> dict[str, float]:
    """The figures as flat ``name: value`` pairs, the ones a later run is compared on."""
    serial, bursts = figures.serial, dict(figures.bursts)
    # The ratios to the baseline of the same run first: they are what two runs compare on.
    out: dict[str, float] = {
        "serial.ratio": paired_ratio(serial, "s3syncer", "baseline"),
        "serial.quart_ratio": paired_ratio(serial, "quart", "baseline"),
        "serial.cpu_per_request_ratio": serial["s3syncer"].cpu_per_request_us
        / serial["baseline"].cpu_per_request_us,
        "burst.rate_ratio": bursts["s3syncer"].wrk.rate / bursts["baseline"].wrk.rate,
    }
    for name, fig in serial.items():
        out[f"serial.{name}.req_s"] = fig.rate
        out[f"serial.{name}.cpu_us_per_request"] = fig.cpu_per_request_us
        out[f"serial.{name}.p50_ms"] = 1000 * percentile(fig.latencies, 0.5)
        out[f"serial.{name}.p99_ms"] = 1000 * percentile(fig.latencies, 0.99)
    if figures.unique is not None:
        bursts["s3syncer-unique"] = figures.unique
    for name, burst in bursts.items():
        for key, value in asdict(burst.wrk).items():
            out[f"burst.{name}.{key}"] = value
        out[f"burst.{name}.rss_growth_mb"] = burst.rss_growth_mb
        if name.startswith("s3syncer"):
            out[f"burst.{name}.runs"] = burst.runs
            out[f"burst.{name}.log_bytes"] = burst.log_bytes
    for name, seconds in (
        ("start", figures.start.over_delay),
        ("start.spawn", figures.start.spawn),
    ):
        out[f"{name}.p50_ms"] = 1000 * statistics.median(seconds)
        out[f"{name}.max_ms"] = 1000 * max(seconds)
    for name, pct in figures.idle_pct.items():
        out[f"idle.{name}.cpu_pct"] = pct
    return out


def render_text(rows: Sequence[Row]) -> str:
    """The table for a terminal."""
    cells = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    out = []
    for n, line in enumerate(cells):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
