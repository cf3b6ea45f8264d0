"""Apache Kafka 4.x in KRaft mode (broker + controller), from Maven Central jars."""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import subprocess
import time
import uuid
from importlib import resources
from pathlib import Path

from pipeline.core.errors import StackError
from pipeline.core.settings import Settings
from pipeline.stack.processes import (
    apt_install,
    pid_alive,
    port_open,
    read_pid,
    terminate,
    wait_until,
)

MAIN_CLASS = "kafka.Kafka"


@dataclasses.dataclass(frozen=True)
class KafkaPaths:
    root: Path
    libs: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j2.properties"

    @property
    def log(self) -> Path:
        return self.root / "kafka.log"

    @property
    def pidfile(self) -> Path:
        return self.root / "kafka.pid"


def paths(settings: Settings) -> KafkaPaths:
    return KafkaPaths(
        root=settings.home / "kafka",
        libs=settings.cache_dir / f"kafka-{settings.kafka_version}" / "libs",
    )


def _pom() -> Path:
    pom = Path(__file__).resolve().parents[2] / "infra" / "kafka" / "pom.xml"
    if not pom.exists():
        raise StackError(f"{pom} is missing; run from a newsflow checkout")
    return pom


def ensure_java_and_maven() -> None:
    missing = [
        p
        for p, exe in (("openjdk-17-jre-headless", "java"), ("maven", "mvn"))
        if shutil.which(exe) is None
    ]
    if missing:
        apt_install(*missing)


def fetch_jars(settings: Settings) -> Path:
    """Resolve Kafka and its log4j2 binding from Maven Central into the cache (once)."""
    libs = paths(settings).libs
    marker = libs / ".complete"
    if marker.exists():
        return libs
    ensure_java_and_maven()
    libs.mkdir(parents=True, exist_ok=True)
    argv = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(_pom()),
        f"-Dkafka.version={settings.kafka_version}",
        "dependency:copy-dependencies",
        "-Dmdep.includeScope=runtime",
        f"-DoutputDirectory={libs}",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        raise StackError(
            f"Maven could not fetch Kafka {settings.kafka_version}:\n"
            f"{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
        )
    marker.write_text(settings.kafka_version)
    return libs


def _server_properties(settings: Settings, data: Path) -> str:
    h, p, c = settings.kafka_host, settings.kafka_port, settings.kafka_controller_port
    return "\n".join(
        [
            "# written by `newsflow stack up`; edits are overwritten",
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{h}:{c}",
            f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            f"advertised.listeners=PLAINTEXT://{h}:{p}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            f"message.max.bytes={max(settings.max_message_bytes * 4, 1048588)}",
            "auto.create.topics.enable=false",
            "",
        ]
    )


def _log4j() -> str:
    return resources.files("pipeline.stack").joinpath("log4j2.properties").read_text()


def _classpath(libs: Path) -> str:
    return str(libs / "*")


def running_pid(settings: Settings) -> int | None:
    p = paths(settings)
    pid = read_pid(p.pidfile)
    if pid and pid_alive(pid, must_contain=(MAIN_CLASS, str(p.config))):
        return pid
    return None


def answers(settings: Settings) -> bool:
    if not port_open(settings.kafka_host, settings.kafka_port):
        return False
    from confluent_kafka.admin import AdminClient

    try:
        meta = AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).list_topics(timeout=3)
    except Exception:
        return False
    return bool(meta.brokers)


def start(settings: Settings) -> str:
    p = paths(settings)
    if running_pid(settings) and answers(settings):
        return "already running"
    if port_open(settings.kafka_host, settings.kafka_port):
        raise StackError(
            f"port {settings.kafka_port} is taken by another program; set NEWSFLOW_KAFKA_PORT"
        )
    libs = fetch_jars(settings)
    p.root.mkdir(parents=True, exist_ok=True)
    p.config.write_text(_server_properties(settings, p.data))
    p.log4j.write_text(_log4j())
    java = ["java", f"-Dlog4j2.configurationFile={p.log4j}", "-cp", _classpath(libs)]
    did = []
    if not (p.data / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        proc = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(p.config)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise StackError(
                f"kafka storage format failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
            )
        did.append("formatted")
    heap = f"-Xmx{settings.kafka_heap_mb}m"
    with open(p.log, "ab") as log:
        proc_ = subprocess.Popen(
            [
                "java",
                heap,
                f"-Xms{min(256, settings.kafka_heap_mb)}m",
                "-XX:+UseG1GC",
                *java[1:],
                MAIN_CLASS,
                str(p.config),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=p.root,
            env=dict(os.environ),
        )
    p.pidfile.write_text(f"{proc_.pid}\n")

    def _up() -> bool:
        if proc_.poll() is not None:
            raise StackError(f"Kafka exited with code {proc_.returncode}; read {p.log}")
        return answers(settings)

    wait_until(_up, timeout_s=settings.start_timeout_s, what="Kafka", log=p.log)
    did.append("started")
    return ", ".join(did)


def stop(settings: Settings) -> bool:
    pid = running_pid(settings)
    if pid is None:
        paths(settings).pidfile.unlink(missing_ok=True)
        return False
    if not terminate(pid, timeout_s=45):
        raise StackError(f"Kafka (pid {pid}) did not stop")
    paths(settings).pidfile.unlink(missing_ok=True)
    return True


def purge(settings: Settings) -> None:
    shutil.rmtree(paths(settings).root, ignore_errors=True)


def ensure_topics(settings: Settings, *, timeout_s: float = 30.0) -> dict[str, str]:
    """Create the project's topics when missing. Returns topic -> "created" | "exists"."""
    wanted = {
        settings.topic_articles: settings.articles_partitions,
        settings.topic_dlq: settings.dlq_partitions,
        settings.topic_predictions: settings.predictions_partitions,
    }
    return create_topics(settings.kafka_bootstrap, wanted, timeout_s=timeout_s)


def create_topics(
    bootstrap: str,
    wanted: dict[str, int],
    *,
    timeout_s: float = 30.0,
) -> dict[str, str]:
    """Create each topic of ``wanted`` (name -> partitions) that does not exist yet."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    result = {name: "exists" for name in wanted if name in existing}
    missing = [(n, k) for n, k in wanted.items() if n not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(n, num_partitions=k, replication_factor=1) for n, k in missing],
            request_timeout=timeout_s,
        )
        for name, fut in futures.items():
            try:
                fut.result(timeout=timeout_s)
                result[name] = "created"
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" in str(exc):
                    result[name] = "exists"
                else:
                    raise StackError(f"could not create topic {name}: {exc}") from exc
        # Metadata propagates asynchronously; wait until every topic is visible with leaders.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            topics = admin.list_topics(timeout=timeout_s).topics
            if all(
                n in topics and all(p.leader >= 0 for p in topics[n].partitions.values())
                for n, _ in missing
            ):
                break
            time.sleep(0.2)
    return result
