"""The bench's surroundings: a fresh database, topics, the processor as a child process, CPU use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from processor.client.connection import KafkaConnection

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def fresh_database(admin_url: str, name: str) -> str:
    """Drop and create database `name` on the server of `admin_url`, migrate it; return its URL."""
    from processor.storage.migrate import upgrade_to_head

    url = make_url(admin_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        _drop(admin, name)
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    target = url.set(database=name).render_as_string(hide_password=False)
    upgrade_to_head(database_url=target)
    return target


def drop_database(admin_url: str, name: str) -> None:
    url = make_url(admin_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        _drop(admin, name)
    finally:
        admin.dispose()


def _drop(admin: sa.Engine, name: str, attempts: int = 60) -> None:
    """DROP DATABASE ... WITH (FORCE); an autovacuum worker (not ours to end) makes it wait."""
    for attempt in range(attempts):
        try:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except sa.exc.DBAPIError as error:
            if attempt == attempts - 1 or "pg_signal_backend" not in str(error.orig):
                raise
            time.sleep(1.0)


def server_versions(database_url: str) -> str:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return str(connection.execute(sa.text("SHOW server_version")).scalar_one())
    finally:
        engine.dispose()


@dataclass(kw_only=True)
class Topics:
    requests: str
    results: str
    dlq: str
    partitions: int


async def create_topics(kafka: KafkaConnection, topics: Topics) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**kafka.options(), client_id="cloudwallet-bench")
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topics.requests, num_partitions=topics.partitions, replication_factor=1, topic_configs={"message.timestamp.type": "LogAppendTime"}),
                NewTopic(topics.results, num_partitions=topics.partitions, replication_factor=1, topic_configs={"cleanup.policy": "compact"}),
                NewTopic(topics.dlq, num_partitions=1, replication_factor=1),
            ]
        )
    finally:
        await admin.close()


async def delete_topics(kafka: KafkaConnection, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka.options(), client_id="cloudwallet-bench")
    await admin.start()
    try:
        await admin.delete_topics(names)
    except Exception:  # noqa: BLE001 - cleanup only
        pass
    finally:
        await admin.close()


class Child:
    """A child process (the processor, or the raw-Kafka passthrough) with its log in a file."""

    def __init__(self, *, name: str, argv: list[str], env: dict[str, str], log_path: Path, ready: str) -> None:
        self.name = name
        self.log_path = log_path
        self.ready = ready
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("w") as log:
            self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> Child:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready in self.log():
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start within {timeout}s:\n{self.log()[-3000:]}")

    def wait_for(self, text: str, *, after: int = 0, timeout: float = 60) -> None:
        """Wait until `text` appears in the log beyond its first `after` characters."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log()[after:]:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not log {text!r} within {timeout}s:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 45) -> None:
        if self.process.poll() is None:
            # Under py-spy the processor is py-spy's child: stop it, and py-spy writes the profile.
            for pid in process_tree(self.pid)[1:] or [self.pid]:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_processor(*, env: dict[str, str], log_path: Path, profile: Path | None = None, profile_rate: int = 100) -> Child:
    argv = [sys.executable, "-m", "processor.cli", "run", "--no-migrate"]
    if profile is not None:
        # py-spy samples the processor from its start to its stop (Python frames, all threads).
        spy = Path(sys.executable).with_name("py-spy")
        fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(profile.suffix, "raw")  # raw: collapsed stacks
        argv = [str(spy), "record", "--rate", str(profile_rate), "--format", fmt, "-o", str(profile), "--", *argv]
    return Child(name="processor", argv=argv, env=env, log_path=log_path, ready="started successfully")


def process_tree(pid: int) -> list[int]:
    """pid and its descendants (the processor under py-spy is py-spy's child)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


# ----------------------------------------------------------------------------------- CPU use


def _proc_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        # utime, stime, cutime, cstime are fields 14-17 (1-based); after ')' the list starts at field 3.
        return sum(int(x) for x in fields[11:15]) / CLOCK_TICKS
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def _pids_where(predicate) -> list[int]:  # type: ignore[no-untyped-def]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if predicate(cmdline):
            found.append(int(entry))
    return found


def _machine_ticks() -> tuple[int, int, int]:
    """Busy, total and stolen ticks of the machine (steal: time the hypervisor gave away)."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]
    steal = values[7] if len(values) > 7 else 0
    return sum(values) - idle, sum(values), steal


@dataclass
class CpuSnapshot:
    at: float
    by_role: dict[str, float]
    busy_ticks: int
    total_ticks: int
    steal_ticks: int = 0


@dataclass
class CpuMeter:
    """CPU seconds used per role (processor, bench client, Kafka broker, PostgreSQL) between two snapshots."""

    processor_pids: list[int] = field(default_factory=list)

    def snapshot(self) -> CpuSnapshot:
        # Backends ("postgres: user db ...") and the postmaster, whose children's CPU it collects
        # when a backend exits (a closed connection's CPU would vanish otherwise).
        postgres = _pids_where(lambda c: c.startswith(b"postgres") or c.split(b"\0", 1)[0].endswith(b"/bin/postgres"))
        kafka = _pids_where(lambda c: b"kafka.Kafka" in c)
        roles = {
            "processor": sum(_proc_cpu_seconds(pid) for pid in self.processor_pids),
            "bench_client": _proc_cpu_seconds(os.getpid()),
            "kafka": sum(_proc_cpu_seconds(pid) for pid in kafka),
            "postgres": sum(_proc_cpu_seconds(pid) for pid in postgres),
        }
        busy, total, steal = _machine_ticks()
        return CpuSnapshot(at=time.monotonic(), by_role=roles, busy_ticks=busy, total_ticks=total, steal_ticks=steal)

    @staticmethod
    def between(a: CpuSnapshot, b: CpuSnapshot) -> dict[str, float]:
        wall = max(b.at - a.at, 1e-9)
        used = {role: round(b.by_role[role] - a.by_role.get(role, 0.0), 2) for role in b.by_role}
        total = max(b.total_ticks - a.total_ticks, 1)
        return {
            **{f"{role}_cpu_s": value for role, value in used.items()},
            "wall_s": round(wall, 2),
            "machine_busy": round((b.busy_ticks - a.busy_ticks) / total, 3),
            # A share of the machine the hypervisor gave to others: runs with more of it are slower.
            "machine_steal": round((b.steal_ticks - a.steal_ticks) / total, 3),
        }


# ----------------------------------------------------------------------------------- lock waits


class LockWaitSampler:
    """How long the processors' batches wait on row locks, sampled from PostgreSQL: every
    `interval` seconds, the backends of the database whose wait event is a lock. Connect as the
    processor's role: PostgreSQL shows a session's wait events only to its own role (or to
    pg_read_all_stats). The estimate is
    samples x interval (seconds of waiting, summed over backends); 10 samples a second cost
    PostgreSQL about 1 ms of CPU each."""

    def __init__(self, database_url: str, *, interval: float = 0.1) -> None:
        self._engine = sa.create_engine(database_url, pool_size=1)
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.waiting_samples = 0
        self.samples = 0

    def __enter__(self) -> LockWaitSampler:
        self._thread = threading.Thread(target=self._run, name="lock-wait-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._engine.dispose()

    @property
    def waited_s(self) -> float:
        return round(self.waiting_samples * self._interval, 2)

    def _run(self) -> None:
        query = sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        with self._engine.connect() as connection:
            while not self._stop.wait(self._interval):
                self.waiting_samples += connection.execute(query).scalar_one()
                connection.rollback()
                self.samples += 1
