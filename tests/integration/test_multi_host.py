"""Three hosts on one machine: a trainer and two workers, each with its own NEWSFLOW_HOME (no
shared files), against one broker, one PostgreSQL and a real MLflow tracking server that
serves the artefacts over HTTP. Models move only through the server."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from pipeline.core import registry
from pipeline.core.datasets import load_dataset
from pipeline.core.db.engine import make_engine
from pipeline.core.settings import Settings
from pipeline.produce import Outgoing, article_messages, produce
from pipeline.proof.bench import wait_group_stable
from pipeline.stack import mlflow_server
from pipeline.worker_process import start_command
from tests.conftest import free_port
from tests.integration.helpers import Worker, prediction_counts, read_topic, wait_for

pytestmark = pytest.mark.integration

POLL_S = 3.0
OUTAGE_S = 60.0


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A tracking server of its own (fresh backend database, artefact root, port)."""
    from pipeline.stack import postgres, stack_status, stack_up

    base = Settings()
    if not all(s.up for s in stack_status(base)):
        stack_up(base)
    s = base.model_copy(
        update={
            "home": tmp_path_factory.mktemp("registry-host"),
            "mlflow_server": True,
            "mlflow_port": free_port(),
            "mlflow_database": f"mlflow_t{uuid.uuid4().hex[:8]}",
            "mlflow_tracking_uri": None,
        }
    )
    mlflow_server.start(s)
    try:
        yield s
    finally:
        mlflow_server.stop(s)
        postgres._psql(s, f'DROP DATABASE IF EXISTS "{s.mlflow_database}" WITH (FORCE)')


def _host(settings: Settings, server: Settings, home: Path) -> Settings:
    return settings.model_copy(
        update={
            "home": home,
            "mlflow_tracking_uri": f"http://127.0.0.1:{server.mlflow_port}",
            "model_poll_s": POLL_S,
            "registry_timeout_s": 3.0,
        }
    )


def _newsflow(settings: Settings, args: list[str], log: Path) -> None:
    proc = start_command(settings, args, log)
    assert proc.wait(240) == 0, log.read_text()[-3000:]


def _stream_stats(env: Settings, run_id: str) -> tuple[int, dict[str, int], list[tuple[str, str]]]:
    """(articles delivered more than once, predictions per model version, refusals)."""
    engine = make_engine(env)
    try:
        with engine.connect() as conn:
            redelivered = conn.execute(
                text("SELECT count(*) FROM articles WHERE id LIKE :p AND deliveries > 1"),
                {"p": run_id + "%"},
            ).scalar_one()
            rows = conn.execute(
                text(
                    "SELECT model_version, count(*) FROM predictions WHERE article_id LIKE :p "
                    "GROUP BY model_version"
                ),
                {"p": run_id + "%"},
            ).all()
            refused = conn.execute(
                text("SELECT version, reason FROM model_events WHERE kind = 'refused'")
            ).all()
    finally:
        engine.dispose()
    return (
        int(redelivered),
        {str(v): int(n) for v, n in rows},
        [(str(v), str(r)) for v, r in refused],
    )


def _serves(w: Worker, version: str) -> Callable[[], bool]:
    return lambda: w.serving() == {version}


def _wait_swap(workers: list[Worker], version: str, since: float) -> list[float]:
    """Seconds from the promotion to each worker serving ``version``."""
    took = []
    for w in workers:
        wait_for(_serves(w, version), POLL_S + 15, f"{w.log} serving {version}")
        took.append(time.monotonic() - since)
    return took


@pytest.mark.timeout(900)
def test_trainer_and_two_workers_share_only_the_tracking_server(
    tracking_server: Settings,
    db: Settings,
    topics: Settings,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    from retraining.bases.tiny import write_tiny_model_folder

    env = topics.model_copy(update={"pg_database": db.pg_database})
    trainer = _host(env, tracking_server, tmp_path / "trainer-home")
    w_hosts = [_host(env, tracking_server, tmp_path / f"worker{i}-home") for i in (1, 2)]
    folders = {
        v: write_tiny_model_folder(tmp_path / "built" / v, version=f"mh-{v}", seed=i)
        for i, v in enumerate(("v1", "v2", "v3", "v4"))
    }
    trainer_log = tmp_path / "trainer.log"
    _newsflow(trainer, ["models", "register", str(folders["v1"]), "--promote"], trainer_log)

    workers = [Worker(h, None, free_port(), tmp_path / f"w{i}.log") for i, h in enumerate(w_hosts)]
    try:
        for w in workers:
            wait_for(_serves(w, "mh-v1"), 120, f"{w.log} serving mh-v1")
        # both in the group before the stream (a join mid-stream redelivers, counted apart)
        wait_group_stable(env.kafka_bootstrap, env.worker_name, 2, 120, report=print)

        rows = load_dataset("ag_news", split="test", data_dir=data_dir)
        run_id, total = "mh", 4000
        produced: dict[str, int] = {}
        v3_serves = threading.Event()

        def gated() -> Iterator[Outgoing]:
            # the last 400 articles wait until both workers serve v3, so v3 classifies some
            # however long the steps before it take on a loaded machine
            for n, message in enumerate(
                article_messages(rows, limit=total, loop=True, run_id=run_id)
            ):
                if n == total - 400:
                    v3_serves.wait(600)
                yield message

        def stream() -> None:
            stats = produce(
                gated(),
                bootstrap=env.kafka_bootstrap,
                topic=env.topic_articles,
                rate=25.0,  # 1,500 articles/min for ~160 s
            )
            produced["sent"], produced["failed"] = stats.sent, stats.failed

        producer = threading.Thread(target=stream, daemon=True)
        producer.start()

        # 1. train and promote on the trainer host: both workers swap within poll + 10 s
        time.sleep(5)
        _newsflow(trainer, ["models", "register", str(folders["v2"]), "--promote"], trainer_log)
        t0 = time.monotonic()  # the alias moved as the command ended
        swap_v2 = _wait_swap(workers, "mh-v2", t0)

        # 2. the tracking server goes away for 60 s: workers keep serving, nothing is lost
        mlflow_server.stop(tracking_server)
        before = prediction_counts(env, run_id)[1]
        time.sleep(OUTAGE_S)
        during = prediction_counts(env, run_id)[1]
        assert during > before + 60 * 20, (before, during)  # still storing at the offered rate
        assert all(w.proc.poll() is None for w in workers)
        assert all(w.serving() == {"mh-v2"} for w in workers)

        # 3. back: the next promotion reaches both
        mlflow_server.start(tracking_server)
        _newsflow(trainer, ["models", "register", str(folders["v3"]), "--promote"], trainer_log)
        t0 = time.monotonic()  # the alias moved as the command ended
        swap_v3 = _wait_swap(workers, "mh-v3", t0)
        v3_serves.set()

        # 4. a version whose artefact was altered on the server: refused, v3 keeps serving
        _newsflow(trainer, ["models", "register", str(folders["v4"])], trainer_log)
        store = mlflow_server.paths(tracking_server).artifacts
        onnx = sorted(store.rglob("model.onnx"), key=lambda p: p.stat().st_mtime)[-1]
        onnx.write_bytes(onnx.read_bytes()[:-100] + b"\0" * 100)  # same size, other bytes
        registry.set_alias(trainer, registry.CHAMPION, "4")  # an admin moves the alias
        time.sleep(POLL_S * 3)

        producer.join(300)
        assert produced == {"sent": total, "failed": 0}
        wait_for(lambda: prediction_counts(env, run_id)[1] >= total, 240, "every article stored")
        assert all(w.serving() == {"mh-v3"} for w in workers)
        stats = _stream_stats(env, run_id)  # before any worker stops (a stop hands over
        # partitions whose last offsets are not committed yet: counted redeliveries)
    finally:
        v3_serves.set()
        for w in workers:
            w.stop()

    rows_stored, distinct = prediction_counts(env, run_id)
    assert (rows_stored, distinct) == (total, total)  # 0 lost
    redelivered, by_version, refused = stats
    published = read_topic(env, env.topic_predictions, total, timeout=120)
    keys = [k for k, _ in published]
    assert len(keys) == total and len(set(keys)) == total  # 0 duplicates on the output topic
    assert redelivered == 0
    assert set(by_version) <= {"mh-v1", "mh-v2", "mh-v3"} and by_version.get("mh-v3", 0) > 0
    assert {v for v, _ in refused} == {"4"} and len(refused) == 2, refused  # one per worker
    assert all("SHA-256" in reason for _, reason in refused)
    assert max(swap_v2 + swap_v3) <= POLL_S + 10, (swap_v2, swap_v3)
    for w in workers:
        assert "registry unreachable" in w.log.read_text()
    print(f"swap v2 {swap_v2} s, v3 {swap_v3} s; outage stored {during - before}; {by_version}")


def test_a_worker_without_a_registry_waits_and_stops_cleanly(
    db: Settings, topics: Settings, tmp_path: Path
) -> None:
    """Tracking URI that does not answer and nothing cached: no crash loop, no model, and
    SIGTERM ends the wait at once."""
    env = topics.model_copy(
        update={
            "pg_database": db.pg_database,
            "home": tmp_path / "lonely",
            "mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}",
            "model_poll_s": 2.0,
        }
    )
    w = Worker(env, None, free_port(), tmp_path / "lonely.log")
    # asked at least three times (start-up alone takes seconds on a loaded 2-core machine)
    deadline = time.monotonic() + 60
    while w.log.read_text().count("does not answer") < 3 and time.monotonic() < deadline:
        assert w.proc.poll() is None, w.log.read_text()[-2000:]
        time.sleep(0.5)
    assert w.proc.poll() is None, w.log.read_text()[-2000:]
    assert w.log.read_text().count("does not answer") >= 3, w.log.read_text()[-2000:]
    t0 = time.monotonic()
    w.stop()
    assert w.proc.returncode == 0 and time.monotonic() - t0 < 5
    assert "stopped while waiting for a champion" in w.log.read_text()


def test_missing_or_altered_artefacts_are_refused_and_nothing_is_replaced(
    tracking_server: Settings, db: Settings, tmp_path: Path
) -> None:
    from pipeline.core import model_fetch
    from pipeline.core.errors import ModelError
    from retraining.bases.tiny import write_tiny_model_folder
    from retraining.register import register_model_folder

    host = _host(db, tracking_server, tmp_path / "trainer")
    host = host.model_copy(update={"registered_model_name": f"mh-bad-{uuid.uuid4().hex[:6]}"})
    version = register_model_folder(host, write_tiny_model_folder(tmp_path / "m", version="b1"))
    worker = host.model_copy(update={"home": tmp_path / "worker"})
    info = model_fetch.get_version(worker, version)
    good = model_fetch.fetch_version(worker, version, info)
    good_bytes = (good / "model.onnx").read_bytes()

    store = mlflow_server.paths(tracking_server).artifacts
    remote = next(p for p in store.rglob("model") if info.run_id in str(p))
    shutil.rmtree(good)  # a fresh host: nothing cached
    (remote / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"tokenizer\.json"):
        model_fetch.fetch_version(worker, version, info)
    assert not good.exists() and not good.with_name(good.name + ".partial").exists()

    # a served file longer than registered: the download stops at the registered size
    remote_onnx = remote / "model.onnx"
    remote_onnx.write_bytes(good_bytes + b"x")
    with pytest.raises(ModelError, match="larger than"):
        model_fetch.fetch_version(worker, version, info)
