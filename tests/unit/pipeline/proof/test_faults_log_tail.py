"""The fault suite's errors carry the worker log's last lines (CI shows the error, not the
log file)."""

from __future__ import annotations

from pathlib import Path

from pipeline.proof.faults import log_tail


def test_tail_is_the_last_lines_prefixed(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    tail = log_tail(log, lines=3)
    assert tail == "\n  | line 97\n  | line 98\n  | line 99"


def test_tail_of_a_huge_log_reads_only_its_end(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_bytes(b"x" * 5_000_000 + b"\n\xff\xfe broken bytes\nlast\n")
    tail = log_tail(log, lines=2)
    assert tail.endswith("\n  | last") and "broken bytes" in tail


def test_a_missing_log_gives_no_tail(tmp_path: Path) -> None:
    assert log_tail(tmp_path / "never-written.log") == ""
