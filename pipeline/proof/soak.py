"""`newsflow soak`: one real worker under a steady load for a long time, its resident memory
sampled; lost and duplicates counted as the fault suite counts them."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.core.datasets import LabelledText
from pipeline.core.settings import Settings
from pipeline.proof.faults import Report, Stream, Workers, case_settings, delete_topics
from pipeline.proof.stored import stream_counts, wait_stored


@dataclasses.dataclass
class SoakResult:
    minutes: float
    rate_per_min: float
    articles: int
    stored: int
    lost: int
    duplicates: int
    rss_mb_after_warmup: float
    rss_mb_end: float
    rss_growth: float  # (end - after warm-up) / after warm-up
    rss_samples_mb: list[tuple[float, float]]  # (seconds, MiB)
    target_growth: float = 0.10

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and self.rss_growth < self.target_growth

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def run_soak(
    settings: Settings,
    *,
    rows: Sequence[LabelledText],
    model_dir: Path | None,
    minutes: float,
    rate_per_min: float,
    report: Report = lambda _: None,
    logs: Path | None = None,
    sample_every_s: float = 15.0,
) -> SoakResult:
    """One worker under a steady load for ``minutes``; its resident memory is sampled. The
    baseline is taken after a warm-up of a tenth of the run (at most 5 minutes): caches,
    the ORT arena and the Faust buffers fill early; growth after that is what leaks."""
    from pipeline.core.db.engine import make_engine

    logs = logs or settings.home / "logs" / "soak"
    logs.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:6]
    prefix = f"soak{tag}"
    s = case_settings(settings, tag, "soak")
    engine = make_engine(s, pool_size=2)
    workers = Workers(s, model_dir, logs)
    n = int(minutes * rate_per_min)
    samples: list[tuple[float, float]] = []
    try:
        proc = workers.start()
        stream = Stream(s, rows, prefix, n, rate_per_min)
        t0 = time.monotonic()
        next_report = t0
        while stream.thread.is_alive():
            if proc.poll() is not None:
                raise RuntimeError("the worker exited during the soak")
            samples.append((round(time.monotonic() - t0, 1), round(rss_mb(proc.pid), 1)))
            if time.monotonic() >= next_report:
                report(f"soak: {stream.sent}/{n} sent, worker RSS {samples[-1][1]:.0f} MiB")
                next_report += 300
            time.sleep(sample_every_s)
        stream.join()
        wait_stored(engine, prefix, n, 300)
        samples.append((round(time.monotonic() - t0, 1), round(rss_mb(proc.pid), 1)))
        counts = stream_counts(engine, prefix)
        distinct = counts.stored
    finally:
        workers.stop_all()
        engine.dispose()
        delete_topics(s)
    warm = min(300.0, minutes * 6)  # a tenth of the run, in seconds, at most 5 min
    after = [m for t, m in samples if t >= warm] or [m for _, m in samples]
    base = after[0]
    end = sorted(m for _, m in samples[-5:])[len(samples[-5:]) // 2]
    return SoakResult(
        minutes=minutes,
        rate_per_min=rate_per_min,
        articles=n,
        stored=distinct,
        lost=n - distinct,
        duplicates=counts.redelivered + counts.conflicts,
        rss_mb_after_warmup=base,
        rss_mb_end=end,
        rss_growth=round((end - base) / base, 4),
        rss_samples_mb=samples,
    )
