"""The web dashboard's cache of what the status reads from outside the database."""

from __future__ import annotations

from monitoring.status import Outside, OutsideCache
from pipeline.core.settings import Settings


def test_outside_figures_are_read_again_only_after_the_ttl() -> None:
    now = [100.0]
    reads: list[int] = []

    def read(settings: Settings) -> Outside:
        reads.append(1)
        return Outside([], len(reads), None)

    cache = OutsideCache(Settings(), ttl_s=15.0, clock=lambda: now[0], read=read)
    assert cache().lag == 1
    now[0] += 14.9
    assert cache().lag == 1  # within the TTL: no new read of Kafka and the registry
    now[0] += 0.1
    assert cache().lag == 2
    assert len(reads) == 2
