"""`newsflow faults`: fault injection and the bad-input campaign on real processes.

Every case runs on its own topics and consumer group against the local stack, with real
`newsflow worker` processes and a producer streaming at a fixed rate:

* ``kill_worker``: two workers; one is killed with SIGKILL mid-stream;
* ``kafka_restart``: the broker is stopped mid-stream and started again;
* ``postgres_outage``: PostgreSQL is stopped for ``pg_down_s`` seconds mid-stream;
* ``add_worker``: a second worker joins mid-stream (a rebalance);
* ``bad_input``: malformed messages of every kind mixed into a valid stream, some sent by an
  outside client (``kcat``): each must reach the DLQ with its reason, each valid one must be
  stored, and the worker must not restart;
* ``fuzz``: seeded random mutations of valid messages sent in rounds into a valid stream, a
  canary after each round that must be stored within 5 s, and every mutation found stored,
  as a recorded conflict, or in the DLQ by its partition and offset (:mod:`pipeline.proof.fuzz`).

Figures per case, each counted where a failure would show: lost (valid articles never
stored); duplicates (article keys published more than once on the ``predictions`` topic,
where a consumer would see them twice); redelivered (articles processed more than once,
counted by the sink in ``articles.deliveries`` — at-least-once delivery makes this > 0
after a crash, and the idempotent sink keeps it harmless); conflicts (messages reusing a
stored id with other text); missing on the topic; and recovery: seconds from the end of
the fault until every article sent before that moment is stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from pipeline.core.datasets import LabelledText
from pipeline.core.settings import Settings
from pipeline.proof.fuzz import CANARY_TARGET_S, account, run_fuzz
from pipeline.proof.stored import stream_counts, wait_stored
from pipeline.stack.processes import free_port

Report = Callable[[str], None]
CASES = ("kill_worker", "kafka_restart", "postgres_outage", "add_worker", "bad_input", "fuzz")
RECOVERY_TARGET_S = 30.0
WORKER_START_S = 120.0  # a worker's metrics endpoint must answer within this


@dataclasses.dataclass
class CaseResult:
    name: str
    articles: int
    malformed: int = 0
    stored: int = 0
    lost: int = 0
    duplicates: int = 0  # keys published twice on the predictions topic
    redelivered: int = 0  # processings beyond the first (articles.deliveries)
    conflicts: int = 0
    topic_missing: int = 0
    fault_seconds: float = 0.0
    recovery_s: float | None = None
    dlq: dict[str, int] = dataclasses.field(default_factory=dict)
    dlq_wrong_reason: int = 0
    dlq_missing: int = 0
    worker_restarts: int = 0
    fuzz: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0  # the whole case, worker starts and checks included

    @property
    def ok(self) -> bool:
        recovered = self.recovery_s is not None and self.recovery_s <= RECOVERY_TARGET_S
        return (
            self.error is None
            and self.lost == 0
            and self.duplicates == 0
            and self.conflicts == 0
            and self.dlq_wrong_reason == 0
            and self.dlq_missing == 0
            and self.worker_restarts == 0
            and (recovered or self.name in ("bad_input", "fuzz"))
            and (
                self.name != "fuzz"
                or (
                    self.fuzz.get("unaccounted") == 0
                    and self.fuzz.get("internal_errors") == 0
                    and self.fuzz.get("canary_max_s", 99.0) <= CANARY_TARGET_S
                )
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


@dataclasses.dataclass(frozen=True)
class FaultOptions:
    articles: int = 5000
    rate_per_min: float = 2000.0
    pg_down_s: float = 60.0
    kafka_down_s: float = 10.0
    malformed: int = 10_000
    kcat_messages: int = 300
    fuzz_messages: int = 2000
    fault_at: float = 0.35  # share of the stream sent before the fault
    cases: tuple[str, ...] = CASES


def log_tail(log: Path, lines: int = 15) -> str:
    """The last lines of a worker's log, for an error message read where the log is not
    (a CI page)."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 8192))
            tail = f.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n  | {line}" for line in tail)


class Workers:
    """Real `newsflow worker` processes with their metrics endpoints."""

    def __init__(self, settings: Settings, model_dir: Path | None, logs: Path) -> None:
        self.settings, self.model_dir, self.logs = settings, model_dir, logs
        self.procs: list[tuple[subprocess.Popen[bytes], int]] = []

    def start(self) -> subprocess.Popen[bytes]:
        from pipeline.worker_process import start_worker

        port = free_port()
        log = self.logs / f"{self.settings.worker_name}-{len(self.procs)}.log"
        proc = start_worker(self.settings, self.model_dir, log, metrics_port=port)
        self.procs.append((proc, port))
        deadline = time.monotonic() + WORKER_START_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited at start; read {log}{log_tail(log)}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).close()
                return proc
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(
            f"worker did not start in {WORKER_START_S:.0f} s; read {log}{log_tail(log)}"
        )

    def stop_all(self) -> None:
        from pipeline.worker_process import stop_process

        for proc, _ in self.procs:
            stop_process(proc)


class Stream:
    """A producer thread streaming ``n`` valid articles and exactly ``malformed`` malformed
    messages (every kind in turn, at random positions); ids ``<prefix>-<i>``."""

    def __init__(
        self,
        settings: Settings,
        rows: Sequence[LabelledText],
        prefix: str,
        n: int,
        rate_per_min: float,
        *,
        malformed: int = 0,
    ) -> None:
        import random

        from pipeline.malformed import BAD_KINDS, bad_messages
        from pipeline.produce import Outgoing, article_messages, produce

        self.sent = 0
        self.malformed: dict[str, str] = {}  # key -> kind
        self.error: BaseException | None = None
        total = n + malformed
        bad_at = set(random.Random(11).sample(range(total), malformed))
        valid = article_messages(rows, limit=None, loop=True, run_id=prefix)

        def messages() -> Any:
            k = 0
            for i in range(total):
                if i in bad_at:
                    key = f"{prefix}-{i}"
                    kind = BAD_KINDS[k % len(BAD_KINDS)]
                    k += 1
                    value, _ = bad_messages(key, settings.max_message_bytes)[kind]
                    self.malformed[key] = kind
                    yield Outgoing(key.encode(), value, bad_kind=kind)
                else:
                    out = next(valid)
                    doc = json.loads(out.value)
                    doc["id"] = f"{prefix}-{i}"
                    yield Outgoing(doc["id"].encode(), json.dumps(doc).encode())
                self.sent += 1

        def run() -> None:
            try:
                produce(
                    messages(),
                    bootstrap=settings.kafka_bootstrap,
                    topic=settings.topic_articles,
                    rate=rate_per_min / 60,
                )
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait_sent(self, count: int, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while self.sent < count and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)

    def join(self, timeout_s: float = 900) -> None:
        self.thread.join(timeout_s)
        if self.error:
            raise RuntimeError(f"producer failed: {self.error}")


def _stored_below(engine: Engine, prefix: str, below: int) -> int:
    """Stored articles of this stream whose sequence number is below ``below``."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM articles WHERE id LIKE :p "
                    "AND split_part(id, '-', 2)::int < :n"
                ),
                {"p": f"{prefix}-%", "n": below},
            ).scalar_one()
        )


def _valid_below(stream: Stream, prefix: str, below: int) -> int:
    bad = sum(
        1
        for k in stream.malformed
        if k.startswith(prefix + "-") and int(k.rsplit("-", 1)[1]) < below
    )
    return below - bad


def _wait_recovered(
    engine: Engine, stream: Stream, prefix: str, below: int, fault_end: float, timeout_s: float
) -> float | None:
    want = _valid_below(stream, prefix, below)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the database may still be coming back
            if _stored_below(engine, prefix, below) >= want:
                return round(time.monotonic() - fault_end, 2)
        time.sleep(0.25)
    return None


def _drain_topic(
    settings: Settings, topic: str, timeout_s: float = 300.0
) -> list[tuple[str, bytes]]:
    """Every (key, value) on ``topic``, read from the start up to the end offsets it has now.

    Partitions are assigned directly, with no consumer group: a group waits for its
    coordinator, which after a broker restart took longer than the 3 s of silence the old
    subscribe-and-wait-for-idle reader allowed, so it read nothing and reported every
    prediction missing (seen once on this machine, kafka_restart case)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"faults-check-{uuid.uuid4().hex[:8]}",  # never joined: assign only
            "enable.auto.commit": False,
        }
    )
    deadline = time.monotonic() + timeout_s
    try:
        ends: dict[int, int] = {}
        while True:  # the leaders may still be coming back after a restart
            try:
                meta = c.list_topics(topic, timeout=10)
                partitions = sorted(meta.topics[topic].partitions)
                if not partitions:
                    raise KafkaException(f"{topic} has no partitions yet")
                ends = {}
                for p in partitions:
                    low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                    if high > low:
                        ends[p] = high
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        out: list[tuple[str, bytes]] = []
        while ends and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:  # control records can sit at the end: ask where we are
                for tp in c.position([TopicPartition(topic, p) for p in list(ends)]):
                    if tp.offset >= ends[tp.partition]:
                        del ends[tp.partition]
                continue
            if msg.error():
                continue
            part, offset = msg.partition(), msg.offset()
            if part is None or offset is None:
                continue
            if part in ends and offset < ends[part]:
                key = msg.key()
                out.append((key.decode("utf-8", "replace") if key else "", msg.value() or b""))
                if offset >= ends[part] - 1:
                    del ends[part]
        if ends:
            raise TimeoutError(
                f"{topic}: partitions {sorted(ends)} not read to their end in {timeout_s:.0f} s"
            )
        return out
    finally:
        c.close()


def _topic_check(settings: Settings, result: CaseResult, prefix: str, valid: int) -> None:
    keys = Counter(k for k, _ in _drain_topic(settings, settings.topic_predictions))
    mine = {k: n for k, n in keys.items() if k.startswith(prefix + "-")}
    result.topic_missing = max(0, valid - len(mine))
    result.duplicates = sum(n - 1 for n in mine.values())


def case_settings(settings: Settings, tag: str, case: str) -> Settings:
    from pipeline.stack.kafka import ensure_topics

    s = settings.model_copy(
        update={
            "topic_articles": f"faults-{tag}-{case}-articles",
            "topic_dlq": f"faults-{tag}-{case}-dlq",
            "topic_predictions": f"faults-{tag}-{case}-predictions",
            "articles_partitions": 8,
            "predictions_partitions": 4,
            "worker_name": f"faults-{tag}-{case}",
        }
    )
    ensure_topics(s)
    return s


def delete_topics(settings: Settings) -> None:
    from confluent_kafka.admin import AdminClient

    with contextlib.suppress(Exception):  # best effort: the topics are the run's own
        AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).delete_topics(
            [settings.topic_articles, settings.topic_dlq, settings.topic_predictions]
        )


def run_case(
    case: str,
    settings: Settings,
    rows: Sequence[LabelledText],
    options: FaultOptions,
    *,
    model_dir: Path | None,
    logs: Path,
    report: Report,
) -> CaseResult:
    from pipeline.core.db.engine import make_engine
    from pipeline.stack import kafka, postgres

    case_started = time.monotonic()
    tag = uuid.uuid4().hex[:6]
    prefix = f"f{tag}{case.replace('_', '')}"
    s = case_settings(settings, tag, case)
    engine = make_engine(s, pool_size=2)
    workers = Workers(s, model_dir, logs)
    n = options.articles
    result = CaseResult(case, n)
    try:
        first = workers.start()
        if case in {"kill_worker"}:
            workers.start()
        malformed = options.malformed if case == "bad_input" else 0
        if case == "bad_input":  # the outside client's share comes on top, mid-stream
            malformed = max(0, malformed - options.kcat_messages)
        stream = Stream(s, rows, prefix, n, options.rate_per_min, malformed=malformed)
        at = int((n + malformed) * options.fault_at)
        stream.wait_sent(at)
        report(f"{case}: {stream.sent} sent; injecting the fault")
        started = time.monotonic()
        if case == "kill_worker":
            victim, _ = workers.procs[1]
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(10)
            result.notes.append(f"worker pid {victim.pid} killed with SIGKILL")
        elif case == "kafka_restart":
            kafka.stop(s)
            time.sleep(options.kafka_down_s)
            kafka.start(s)
        elif case == "postgres_outage":
            postgres.stop(s)
            time.sleep(options.pg_down_s)
            postgres.start(s)
        elif case == "add_worker":
            workers.start()
        elif case == "bad_input":
            sent_by_kcat = _send_with_kcat(s, prefix, options.kcat_messages)
            stream.malformed.update(sent_by_kcat)
            result.notes.append(f"{len(sent_by_kcat)} malformed messages sent by kcat")
        elif case == "fuzz":
            fuzzed = run_fuzz(s, engine, options.fuzz_messages, tag=tag, seed=len(rows))
        fault_end = time.monotonic()
        result.fault_seconds = round(fault_end - started, 2)
        below = stream.sent
        result.recovery_s = _wait_recovered(engine, stream, prefix, below, fault_end, 180)
        report(
            f"{case}: fault over after {result.fault_seconds:.1f} s; "
            f"recovered in {result.recovery_s} s"
        )
        stream.join()
        valid = stream.sent - len([k for k in stream.malformed if not k.startswith("kcat-")])
        result.malformed = len(stream.malformed)
        wait_stored(engine, prefix, valid, 300)
        counts = stream_counts(engine, prefix)
        result.stored, result.lost = counts.stored, valid - counts.stored
        result.redelivered, result.conflicts = counts.redelivered, counts.conflicts
        result.articles = valid
        _topic_check(s, result, prefix, valid)
        if case == "bad_input":
            _dlq_check(s, result, stream.malformed)
            result.worker_restarts = 0 if first.poll() is None else 1
        elif case == "fuzz":
            acct = account(engine, s.topic_articles, fuzzed, _drain_topic(s, s.topic_dlq))
            result.fuzz = {
                **dataclasses.asdict(acct),
                "canary_max_s": fuzzed.canary_max_s,
                "canaries": len(fuzzed.canary_s),
            }
            result.worker_restarts = 0 if first.poll() is None else 1
        else:
            alive = [p for p, _ in workers.procs if p.poll() is None]
            expected = len(workers.procs) - (1 if case == "kill_worker" else 0)
            if len(alive) != expected:
                result.worker_restarts = expected - len(alive)
                result.notes.append("a worker exited during the case")
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        workers.stop_all()
        engine.dispose()
        delete_topics(s)
        result.seconds = round(time.monotonic() - case_started, 1)
    report(
        f"{case}: done in {result.seconds:.0f} s" + (f"; {result.error}" if result.error else "")
    )
    return result


def _send_with_kcat(settings: Settings, prefix: str, count: int) -> dict[str, str]:
    """Malformed messages from an outside client: kcat reading key<TAB>value lines."""
    from pipeline.malformed import bad_messages

    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        raise RuntimeError("kcat is not installed (Debian: apt-get install kcat)")
    line_safe = [
        "invalid_json",
        "not_object",
        "missing_id",
        "long_id",
        "number_id",
        "no_text",
        "wrong_type",
        "wrong_type_list",
        "bad_timestamp",
        "empty_text",
        "nul_in_id",
        "control_in_id",
        "huge_integer",
        "nan_number",
        "deep_object",
        "trailing_garbage",
        "json_null",
        "id_overridden",
        "key_mismatch",
        "timestamp_overflow",
    ]
    sent: dict[str, str] = {}
    lines = []
    for i in range(count):
        kind = line_safe[i % len(line_safe)]
        key = f"kcat-{prefix}-{i}"
        value, _ = bad_messages(key, settings.max_message_bytes)[kind]
        lines.append(key.encode() + b"\t" + value)
        sent[key] = kind
    proc = subprocess.run(
        [kcat, "-P", "-b", settings.kafka_bootstrap, "-t", settings.topic_articles, "-K", "\t"],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kcat failed: {proc.stderr.decode()[-500:]}")
    return sent


def _dlq_check(settings: Settings, result: CaseResult, malformed: dict[str, str]) -> None:
    from pipeline.malformed import bad_messages

    expected = {
        key: bad_messages(key, settings.max_message_bytes)[kind][1].value
        for key, kind in malformed.items()
    }
    seen: dict[str, str] = {}
    for key, value in _drain_topic(settings, settings.topic_dlq):
        try:
            seen[key] = json.loads(value)["reason"]
        except (ValueError, KeyError):
            seen[key] = "?"
    result.dlq = dict(Counter(seen.values()))
    result.dlq_missing = sum(1 for k in expected if k not in seen)
    result.dlq_wrong_reason = sum(1 for k, r in expected.items() if k in seen and seen[k] != r)


def run_faults(
    settings: Settings,
    options: FaultOptions,
    *,
    rows: Sequence[LabelledText],
    model_dir: Path | None,
    report: Report = lambda _: None,
    logs: Path | None = None,
) -> list[CaseResult]:
    """``settings`` must be the stack's own (its home locates the broker and database
    processes the cases stop and start)."""
    logs = logs or settings.home / "logs" / "faults"
    logs.mkdir(parents=True, exist_ok=True)
    results = []
    for case in options.cases:
        if case not in CASES:
            raise ValueError(f"unknown case {case!r}; cases: {', '.join(CASES)}")
        report(f"case {case}")
        results.append(
            run_case(case, settings, rows, options, model_dir=model_dir, logs=logs, report=report)
        )
    return results
