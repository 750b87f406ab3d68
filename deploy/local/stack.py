#!/usr/bin/env python3
"""The local stack: a real Apache Kafka broker (KRaft, one node) and a real PostgreSQL, no Docker.

    python3 deploy/local/stack.py up | down | status | env      [kafka | postgres]

* Kafka's jars come from Maven Central through Maven into a cache outside the repository and run
  on the machine's Java 17.
* PostgreSQL is Debian's package (installed with apt-get when missing and we are root), run as a
  project-owned cluster in a data directory outside the repository.

Every command is idempotent. `up` prints the settings the app and the tests use:
KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL. Only the standard library is used, so this runs before
any virtualenv exists.

Settings (environment, all optional):
  CLOUDWALLET_CACHE_DIR   jars and Maven files   (default ~/.cache/cloudwallet)
  CLOUDWALLET_STATE_DIR   data, logs and pids     (default ~/.local/state/cloudwallet)
  CLOUDWALLET_KAFKA_PORT  broker port on 127.0.0.1 (default 19092; the controller uses port+1)
  CLOUDWALLET_PG_PORT     PostgreSQL port          (default 15432)
  CLOUDWALLET_KAFKA_VERSION  Apache Kafka version  (default 4.3.1)
  CLOUDWALLET_KAFKA_HEAP  broker heap              (default 512m)

Default ports sit below Linux's ephemeral range (32768-60999): a port in that range can be taken
by any outgoing connection (a reconnecting client), and a restart then fails with
"Address already in use".
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

# 4.4.0 is listed on Maven Central but its kafka-tools-api jar is missing there, so the broker
# cannot be resolved from it; 4.3.1 is the newest complete 4.x release.
DEFAULT_KAFKA_VERSION = "4.3.1"
LOG4J_VERSION = "2.25.4"
DB_NAME = DB_USER = DB_PASSWORD = "cloudwallet"


class StackError(RuntimeError):
    """A problem the user must fix; the message says what to do."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    cache_dir: Path
    state_dir: Path
    kafka_port: int
    pg_port: int
    kafka_version: str
    kafka_heap: str

    @property
    def controller_port(self) -> int:
        return self.kafka_port + 1

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{self.pg_port}/{DB_NAME}"

    @property
    def kafka_libs(self) -> Path:
        return self.cache_dir / f"kafka-{self.kafka_version}" / "libs"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"


def _int_setting(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not a port number") from None
    if not 1024 <= value <= 65534:
        raise StackError(f"{name}={value} must be between 1024 and 65534")
    return value


def load_settings() -> Settings:
    home = Path.home()
    return Settings(
        cache_dir=Path(os.environ.get("CLOUDWALLET_CACHE_DIR", home / ".cache" / "cloudwallet")),
        state_dir=Path(os.environ.get("CLOUDWALLET_STATE_DIR", home / ".local" / "state" / "cloudwallet")),
        kafka_port=_int_setting("CLOUDWALLET_KAFKA_PORT", 19092),
        pg_port=_int_setting("CLOUDWALLET_PG_PORT", 15432),
        kafka_version=os.environ.get("CLOUDWALLET_KAFKA_VERSION", DEFAULT_KAFKA_VERSION),
        kafka_heap=os.environ.get("CLOUDWALLET_KAFKA_HEAP", "512m"),
    )


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


# --------------------------------------------------------------------------------------- Kafka


def kafka_metadata_brokers(port: int, timeout: float = 2.0) -> int:
    """Send a Metadata v4 request; return how many brokers the answer lists (0 = not ready)."""
    client_id = b"cloudwallet-stack"
    body = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id + struct.pack(">i?", -1, False)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 4)
            payload = _recv_exact(sock, struct.unpack(">i", header)[0])
    except OSError:
        return 0
    # correlation id, throttle_time_ms, then the brokers array length
    _correlation, _throttle, brokers = struct.unpack(">iii", payload[:12])
    return max(brokers, 0)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise OSError("connection closed")
        chunks += chunk
    return bytes(chunks)


def ensure_kafka_jars(settings: Settings) -> None:
    libs = settings.kafka_libs
    marker = libs / ".complete"
    if marker.exists():
        return
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is not installed: install it (Debian: apt-get install maven) and retry")
    project = libs.parent
    project.mkdir(parents=True, exist_ok=True)
    (project / "pom.xml").write_text(
        f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.cloudwallet</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{settings.kafka_version}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""
    )
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    log = settings.log_dir / "maven.log"
    say(f"resolving Apache Kafka {settings.kafka_version} from Maven Central (once; log: {log})")
    with log.open("w") as out:
        done = subprocess.run(
            ["mvn", "-B", "-q", "dependency:copy-dependencies", f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise StackError(
            f"Maven could not resolve org.apache.kafka:kafka_2.13:{settings.kafka_version}.\n{tail}\n"
            "Check that Maven Central is reachable, or set CLOUDWALLET_KAFKA_VERSION to another 4.x release."
        )
    marker.write_text(settings.kafka_version)


def kafka_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("Java is not installed: install a JDK 17 or newer (Debian: apt-get install openjdk-17-jre-headless)")
    return java


def write_kafka_config(settings: Settings) -> Path:
    data = settings.kafka_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = settings.kafka_dir / "server.properties"
    config.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{settings.controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{settings.kafka_port},CONTROLLER://127.0.0.1:{settings.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{settings.kafka_port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={data}",
                # Topics are created explicitly by the app and the tests, with their partition counts.
                "auto.create.topics.enable=false",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=4",
                "group.initial.rebalance.delay.ms=0",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "log.retention.hours=24",
                "message.max.bytes=2097152",
                "",
            ]
        )
    )
    (settings.kafka_dir / "log4j2.yaml").write_text(
        "Configuration:\n"
        "  Appenders:\n"
        "    Console:\n"
        "      name: STDOUT\n"
        "      PatternLayout:\n"
        '        pattern: "[%d] %p %m (%c)%n"\n'
        "  Loggers:\n"
        "    Root:\n"
        "      level: INFO\n"
        "      AppenderRef:\n"
        "        - ref: STDOUT\n"
    )
    return config


def kafka_up(settings: Settings) -> None:
    pid_file = settings.kafka_dir / "kafka.pid"
    if read_pid(pid_file) and kafka_metadata_brokers(settings.kafka_port) > 0:
        say(f"Kafka already running on {settings.bootstrap_servers}")
        return
    if port_open(settings.kafka_port) or port_open(settings.controller_port):
        raise StackError(
            f"port {settings.kafka_port} or {settings.controller_port} on 127.0.0.1 is taken by another process: "
            "stop it, or set CLOUDWALLET_KAFKA_PORT to a free port"
        )
    java = kafka_java()
    ensure_kafka_jars(settings)
    config = write_kafka_config(settings)
    classpath = f"{settings.kafka_libs}/*"
    data = settings.kafka_dir / "data"
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    if not (data / "meta.properties").exists():
        done = subprocess.run(
            [java, "-cp", classpath, "kafka.tools.StorageTool", "format", f"--cluster-id={kafka_cluster_id()}", "-c", str(config)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{done.stdout}{done.stderr}")
    log = settings.log_dir / "kafka.log"
    say(f"starting Apache Kafka {settings.kafka_version} (KRaft) on {settings.bootstrap_servers}; log: {log}")
    with log.open("a") as out:
        process = subprocess.Popen(
            [
                java,
                f"-Xms{settings.kafka_heap}",
                f"-Xmx{settings.kafka_heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={settings.kafka_dir / 'log4j2.yaml'}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(config),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
            raise StackError(f"Kafka exited with code {process.returncode}; last lines of {log}:\n{tail}")
        if kafka_metadata_brokers(settings.kafka_port) > 0:
            say(f"Kafka answers metadata requests ({time.monotonic() - deadline + 90:.1f}s)")
            return
        time.sleep(0.3)
    raise StackError(f"Kafka did not answer metadata requests within 90 s; see {log}")


def kafka_cluster_id() -> str:
    """A new cluster ID as `kafka-storage.sh random-uuid` makes one: a URL-safe base64 UUID
    without padding that never begins with "-".

    About 1 in 64 such IDs would begin with "-", which the storage tool's argument parser reads
    as an option ("argument --cluster-id/-t: expected one argument"). Kafka's `Uuid.randomUuid`
    draws again in that case, and so do we; the ID is also passed as `--cluster-id=ID`, so no
    value can be read as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_down(settings: Settings) -> None:
    pid_file = settings.kafka_dir / "kafka.pid"
    pid = read_pid(pid_file)
    if pid is None:
        say("Kafka is not running")
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(150):
        if read_pid(pid_file) is None:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    say("Kafka stopped")


def kafka_version_running(settings: Settings) -> str | None:
    log = settings.log_dir / "kafka.log"
    if not log.exists():
        return None
    version = None
    for line in log.read_text(errors="replace").splitlines():
        if "Kafka version:" in line:
            version = line.split("Kafka version:", 1)[1].split()[0]
    return version


# ---------------------------------------------------------------------------------- PostgreSQL


def pg_bindir() -> Path | None:
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin") if (p / "initdb").exists()), key=lambda p: int(p.parent.name))
    return versions[-1] if versions else None


def ensure_pg_installed() -> Path:
    bindir = pg_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0:
        raise StackError("PostgreSQL server binaries are missing: install Debian's package (sudo apt-get install postgresql) and retry")
    say("installing PostgreSQL from Debian's packages (apt-get install postgresql)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise StackError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    bindir = pg_bindir()
    if bindir is None:
        raise StackError("apt-get installed postgresql but no initdb was found under /usr/lib/postgresql")
    return bindir


def _pg_owner() -> str | None:
    """Run PostgreSQL as `postgres` when we are root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--home", "/var/lib/postgresql", "postgres"], check=True)
    return "postgres"


def _as_owner(owner: str | None, command: list[str]) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else command


def pg_up(settings: Settings) -> None:
    bindir = ensure_pg_installed()
    owner = _pg_owner()
    data = settings.pg_dir / "data"
    sockets = settings.pg_dir / "run"
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    log = settings.log_dir / "postgres.log"
    if owner:
        # The postgres user must be able to reach its data dir and log file.
        for path in (settings.state_dir, settings.pg_dir, settings.log_dir):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o755)
        for parent in settings.state_dir.parents:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
        log.touch()
        shutil.chown(log, owner)
    sockets.mkdir(parents=True, exist_ok=True)
    if owner:
        shutil.chown(sockets, owner)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if owner:
            shutil.chown(data, owner)
        data.chmod(0o700)
        say(f"creating a PostgreSQL cluster in {data}")
        done = subprocess.run(
            _as_owner(owner, [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"]),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise StackError(f"initdb failed:\n{done.stdout}{done.stderr}")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# cloudwallet local stack\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {settings.pg_port}\n"
                f"unix_socket_directories = '{sockets}'\n"
                "max_connections = 200\n"
                "shared_buffers = 512MB\n"
                "max_wal_size = 2GB\n"
                "checkpoint_timeout = 15min\n"
            )
    status = subprocess.run(_as_owner(owner, [str(bindir / "pg_ctl"), "-D", str(data), "status"]), capture_output=True, text=True)
    if status.returncode == 0:
        say(f"PostgreSQL already running on 127.0.0.1:{settings.pg_port}")
    else:
        if port_open(settings.pg_port):
            raise StackError(f"port {settings.pg_port} on 127.0.0.1 is taken by another process: stop it, or set CLOUDWALLET_PG_PORT to a free port")
        say(f"starting PostgreSQL on 127.0.0.1:{settings.pg_port}; log: {log}")
        done = subprocess.run(
            # The port setting wins over the one a cluster was created with.
            _as_owner(owner, [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", f"-p {settings.pg_port}", "-w", "-t", "60", "start"]),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise StackError(f"PostgreSQL did not start:\n{done.stdout}{done.stderr}\nsee {log}")
    _pg_ensure_role_and_db(settings, bindir, owner, sockets)


def _psql(settings: Settings, bindir: Path, owner: str | None, sockets: Path, sql: str) -> str:
    done = subprocess.run(
        _as_owner(owner, [str(bindir / "psql"), "-h", str(sockets), "-p", str(settings.pg_port), "-U", "postgres", "-d", "postgres", "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql]),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise StackError(f"psql failed on {sql!r}:\n{done.stderr}")
    return done.stdout.strip()


def _pg_ensure_role_and_db(settings: Settings, bindir: Path, owner: str | None, sockets: Path) -> None:
    if _psql(settings, bindir, owner, sockets, f"SELECT 1 FROM pg_roles WHERE rolname = '{DB_USER}'") != "1":
        _psql(settings, bindir, owner, sockets, f"CREATE ROLE {DB_USER} LOGIN CREATEDB PASSWORD '{DB_PASSWORD}'")
    if _psql(settings, bindir, owner, sockets, f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'") != "1":
        _psql(settings, bindir, owner, sockets, f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")


def pg_down(settings: Settings) -> None:
    bindir = pg_bindir()
    data = settings.pg_dir / "data"
    if bindir is None or not (data / "PG_VERSION").exists():
        say("PostgreSQL is not set up")
        return
    owner = _pg_owner()
    done = subprocess.run(_as_owner(owner, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True, text=True)
    say("PostgreSQL stopped" if done.returncode == 0 else "PostgreSQL is not running")


def pg_version_running(settings: Settings) -> str | None:
    bindir = pg_bindir()
    if bindir is None or not port_open(settings.pg_port):
        return None
    try:
        return _psql(settings, bindir, _pg_owner(), settings.pg_dir / "run", "SHOW server_version")
    except StackError:
        return None


# ------------------------------------------------------------------------------------ commands


def print_env(settings: Settings) -> None:
    """Print the app's settings as shell exports; settings already in the environment win."""
    for name, value in (("KAFKA_BOOTSTRAP_SERVERS", settings.bootstrap_servers), ("DATABASE_URL", settings.database_url)):
        print(f"export {name}={os.environ.get(name) or value}")


def status(settings: Settings) -> dict[str, object]:
    kafka_ready = kafka_metadata_brokers(settings.kafka_port) > 0
    pg_version = pg_version_running(settings)
    return {
        "kafka": {
            "running": kafka_ready,
            "version": kafka_version_running(settings) if kafka_ready else None,
            "bootstrap_servers": settings.bootstrap_servers,
            "log": str(settings.log_dir / "kafka.log"),
        },
        "postgres": {
            "running": pg_version is not None,
            "version": pg_version,
            "database_url": settings.database_url,
            "log": str(settings.log_dir / "postgres.log"),
        },
    }


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    only = argv[2] if len(argv) > 2 else None
    if only not in (None, "kafka", "postgres"):
        print(f"[stack] error: unknown service {only!r}: use kafka or postgres", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        if command == "up":
            if only != "kafka":
                pg_up(settings)
            if only != "postgres":
                kafka_up(settings)
            info = status(settings)
            say(f"Apache Kafka {info['kafka']['version']} and PostgreSQL {info['postgres']['version']} are up")
            print_env(settings)
        elif command == "down":
            if only != "postgres":
                kafka_down(settings)
            if only != "kafka":
                pg_down(settings)
        elif command == "status":
            info = status(settings)
            print(json.dumps(info, indent=2))
            return 0 if info["kafka"]["running"] and info["postgres"]["running"] else 3
        elif command == "env":
            print_env(settings)
        else:
            print(__doc__)
            return 2
    except StackError as error:
        print(f"[stack] error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
