#!/usr/bin/env python3
"""The local stack: a real Apache Kafka broker (KRaft, one node) and a real PostgreSQL, no Docker.

    python3 deploy/local/stack.py up | down | status      [kafka | postgres]
    python3 deploy/local/stack.py env [--as admin|processor|gateway|client]
    python3 deploy/local/stack.py env-file [--as ROLE]   (the same, in a private file; prints its path)

* Kafka's jars come from Maven Central through Maven into a cache outside the repository and run
  on the machine's Java 17.
* PostgreSQL is Debian's package (installed with apt-get when missing and we are root), run as a
  project-owned cluster in a data directory outside the repository.

Every command is idempotent. Only the standard library is used, so this runs before any
virtualenv exists.

Secure by default, as production should be:
* the broker listens only with SASL over TLS (SCRAM-SHA-512; a CA and a broker certificate are
  generated into the state directory), KRaft's StandardAuthorizer is on and nothing is allowed
  without an ACL (`cloudwallet kafka-acls` grants them per principal);
* one Kafka user per role: admin (the broker's own and the operator's), processor, gateway,
  client; passwords are generated into files only the owner can read;
* PostgreSQL authenticates every connection, the local socket included, with scram-sha-256.

`env [--as ROLE]` prints, as shell exports, what ROLE needs to connect (default: client):
bootstrap servers, security protocol, SASL mechanism, user, password file, CA file, and for the
roles that use the database, DATABASE_URL.

Settings (environment, all optional):
  CLOUDWALLET_CACHE_DIR   jars and Maven files   (default ~/.cache/cloudwallet)
  CLOUDWALLET_STATE_DIR   data, logs and pids     (default ~/.local/state/cloudwallet)
  CLOUDWALLET_KAFKA_PORT  broker port on 127.0.0.1 (default 19092; the controller uses port+1)
  CLOUDWALLET_PG_PORT     PostgreSQL port          (default 15432)
  CLOUDWALLET_KAFKA_VERSION  Apache Kafka version  (default 4.3.1)
  CLOUDWALLET_KAFKA_HEAP  broker heap              (default 512m)
  CLOUDWALLET_KAFKA_PLAINTEXT=1  a plain broker (no TLS, no SASL, no ACLs), only to measure what
                          they cost; give it a CLOUDWALLET_STATE_DIR of its own

Default ports sit below Linux's ephemeral range (32768-60999): a port in that range can be taken
by any outgoing connection (a reconnecting client), and a restart then fails with
"Address already in use".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import ssl
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
DB_NAME = DB_USER = "cloudwallet"
KAFKA_USERS = ("admin", "processor", "gateway", "client")
SCRAM_MECHANISM = "SCRAM-SHA-512"
# Bumped when the broker's security set-up changes: older storage is formatted again.
KAFKA_SECURITY_LAYOUT = "sasl-ssl-scram-v1"


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
    kafka_plaintext: bool = False  # a plain broker: no TLS, no SASL, no ACLs (for measuring their cost)

    @property
    def controller_port(self) -> int:
        return self.kafka_port + 1

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def database_url_for(self, role: str) -> str:
        """No password in the URL (it would end up in logs): libpq reads it from the passfile."""
        return f"postgresql+psycopg://{role}@127.0.0.1:{self.pg_port}/{DB_NAME}?passfile={self.secrets_dir / f'pgpass-{role}'}"

    @property
    def database_url(self) -> str:
        return self.database_url_for(DB_USER)

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def tls_dir(self) -> Path:
        return self.secrets_dir / "tls"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

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
        kafka_plaintext=os.environ.get("CLOUDWALLET_KAFKA_PLAINTEXT", "") in ("1", "true", "yes"),
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


# ------------------------------------------------------------------------------------- secrets


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def secret_file(settings: Settings, name: str, *, nbytes: int = 24) -> Path:
    """A generated password, created once, readable only by its owner."""
    path = private_dir(settings.secrets_dir) / f"{name}.password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            # URL-safe, and free of the characters that JAAS and pgpass treat specially.
            out.write(secrets.token_urlsafe(nbytes).replace("-", "x").replace("_", "y") + "\n")
    return path


def secret(settings: Settings, name: str) -> str:
    return secret_file(settings, name).read_text().strip()


def _keytool(*args: str, store_password: str) -> None:
    keytool = shutil.which("keytool")
    if keytool is None:
        raise StackError("keytool is missing: it comes with the JDK (Debian: apt-get install openjdk-17-jdk-headless)")
    # The store password goes by environment (-storepass:env), never on a command line `ps` shows.
    env = dict(os.environ, CLOUDWALLET_STORE_PASSWORD=store_password)
    done = subprocess.run([keytool, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise StackError(f"keytool {args[0]} failed:\n{done.stdout}{done.stderr}")


def ensure_tls(settings: Settings) -> None:
    """A local CA and a broker certificate for 127.0.0.1 and localhost (ECDSA P-256), made once.
    Clients trust the CA (ca.pem); the broker serves broker.p12 and trusts truststore.p12."""
    tls = private_dir(settings.tls_dir)
    if (tls / "broker.p12").exists() and settings.ca_file.exists():
        return
    for stale in tls.iterdir():
        stale.unlink()
    store_password = secret(settings, "tls-store")
    common = ("-storetype", "PKCS12", "-storepass:env", "CLOUDWALLET_STORE_PASSWORD")
    key = ("-keyalg", "EC", "-groupname", "secp256r1")
    names = "SAN=ip:127.0.0.1,dns:localhost"
    say(f"creating a local CA and a broker certificate in {tls}")
    _keytool("-genkeypair", "-alias", "ca", *key, "-dname", "CN=cloudwallet local CA", "-ext", "bc:c", "-validity", "3650", "-keystore", str(tls / "ca.p12"), *common, store_password=store_password)
    _keytool("-exportcert", "-rfc", "-alias", "ca", "-keystore", str(tls / "ca.p12"), "-file", str(settings.ca_file), *common, store_password=store_password)
    _keytool("-genkeypair", "-alias", "broker", *key, "-dname", "CN=localhost", "-ext", names, "-validity", "825", "-keystore", str(tls / "broker.p12"), *common, store_password=store_password)
    _keytool("-certreq", "-alias", "broker", "-keystore", str(tls / "broker.p12"), "-file", str(tls / "broker.csr"), *common, store_password=store_password)
    _keytool("-gencert", "-rfc", "-alias", "ca", "-keystore", str(tls / "ca.p12"), "-infile", str(tls / "broker.csr"), "-outfile", str(tls / "broker.pem"), "-ext", names, "-validity", "825", *common, store_password=store_password)
    _keytool("-importcert", "-noprompt", "-alias", "ca", "-file", str(settings.ca_file), "-keystore", str(tls / "broker.p12"), *common, store_password=store_password)
    _keytool("-importcert", "-noprompt", "-alias", "broker", "-file", str(tls / "broker.pem"), "-keystore", str(tls / "broker.p12"), *common, store_password=store_password)
    _keytool("-importcert", "-noprompt", "-alias", "ca", "-file", str(settings.ca_file), "-keystore", str(tls / "truststore.p12"), *common, store_password=store_password)
    settings.ca_file.chmod(0o644)  # a CA certificate is public


# --------------------------------------------------------------------------------------- Kafka


class KafkaWire:
    """Just enough of Kafka's protocol to ask a secured broker whether it is ready: TLS, a SCRAM
    login (RFC 5802) and a Metadata request. (The stack runs before any virtualenv exists.)"""

    CLIENT_ID = b"cloudwallet-stack"

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.correlation = 0

    def call(self, api_key: int, version: int, body: bytes) -> bytes:
        self.correlation += 1
        header = struct.pack(">hhih", api_key, version, self.correlation, len(self.CLIENT_ID)) + self.CLIENT_ID
        self.sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        size = struct.unpack(">i", _recv_exact(self.sock, 4))[0]
        return _recv_exact(self.sock, size)[4:]  # past the correlation id

    def scram_login(self, *, user: str, password: str) -> None:
        mechanism = SCRAM_MECHANISM.encode()
        answer = self.call(17, 1, struct.pack(">h", len(mechanism)) + mechanism)  # SaslHandshake v1
        if struct.unpack(">h", answer[:2])[0] != 0:
            raise OSError("the broker does not offer SCRAM-SHA-512")
        nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        first_bare = f"n={user},r={nonce}"
        server_first = self._authenticate(f"n,,{first_bare}".encode()).decode()
        fields = dict(item.split("=", 1) for item in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha512").digest()
        final_bare = f"c=biws,r={fields['r']}"
        auth_message = f"{first_bare},{server_first},{final_bare}".encode()
        signature = hmac.new(hashlib.sha512(client_key).digest(), auth_message, "sha512").digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
        self._authenticate(f"{final_bare},p={proof}".encode())

    def _authenticate(self, payload: bytes) -> bytes:
        answer = self.call(36, 0, struct.pack(">i", len(payload)) + payload)  # SaslAuthenticate v0
        error, message_size = struct.unpack(">hh", answer[:4])
        rest = answer[4 + max(message_size, 0):]
        if error != 0:
            raise PermissionError(answer[4:4 + max(message_size, 0)].decode(errors="replace") or f"SASL error {error}")
        return rest[4:4 + struct.unpack(">i", rest[:4])[0]]

    def broker_count(self) -> int:
        answer = self.call(3, 4, struct.pack(">i?", -1, False))  # Metadata v4: all topics, no creation
        _throttle, brokers = struct.unpack(">ii", answer[:8])
        return max(brokers, 0)


def kafka_metadata_brokers(settings: Settings, *, user: str = "admin", timeout: float = 2.0) -> int:
    """Log in over TLS as `user` and ask for metadata; how many brokers it lists (0 = not ready)."""
    if settings.kafka_plaintext:
        try:
            with socket.create_connection(("127.0.0.1", settings.kafka_port), timeout=timeout) as sock:
                return KafkaWire(sock).broker_count()
        except (OSError, ValueError, struct.error):
            return 0
    context = ssl.create_default_context(cafile=str(settings.ca_file))
    try:
        with socket.create_connection(("127.0.0.1", settings.kafka_port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                wire = KafkaWire(sock)
                wire.scram_login(user=user, password=secret(settings, f"kafka-{user}"))
                return wire.broker_count()
    except (OSError, ValueError, KeyError, struct.error):
        return 0


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


def secure_listener_lines(settings: Settings) -> list[str]:
    tls, store_password, admin_password = settings.tls_dir, secret(settings, "tls-store"), secret(settings, "kafka-admin")
    scram_login = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{admin_password}";'
    plain_login = (
        f'org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="{admin_password}" '
        f'user_admin="{admin_password}";'
    )
    return [
        # Clients, and the broker to itself, log in with SCRAM over TLS. The controller
        # listener uses PLAIN over TLS: KRaft cannot use SCRAM there (its credentials live
        # in the metadata log the controller serves), so its one user is in the JAAS line.
        f"listeners=SECURE://127.0.0.1:{settings.kafka_port},CONTROLLER://127.0.0.1:{settings.controller_port}",
        f"advertised.listeners=SECURE://127.0.0.1:{settings.kafka_port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=SECURE",
        "listener.security.protocol.map=CONTROLLER:SASL_SSL,SECURE:SASL_SSL",
        f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}",
        f"listener.name.secure.sasl.enabled.mechanisms={SCRAM_MECHANISM}",
        f'listener.name.secure.scram-sha-512.sasl.jaas.config={scram_login}',
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f'listener.name.controller.plain.sasl.jaas.config={plain_login}',
        f"ssl.keystore.type=PKCS12",
        f"ssl.keystore.location={tls / 'broker.p12'}",
        f"ssl.keystore.password={store_password}",
        f"ssl.truststore.type=PKCS12",
        f"ssl.truststore.location={tls / 'truststore.p12'}",
        f"ssl.truststore.password={store_password}",
        "ssl.client.auth=none",
        "ssl.endpoint.identification.algorithm=https",
        # Nothing is allowed without an ACL; the broker's own user (admin) is the only super user.
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        "super.users=User:admin",
    ]


def plain_listener_lines(settings: Settings) -> list[str]:
    """CLOUDWALLET_KAFKA_PLAINTEXT=1: no TLS, no login, no authorizer. Only for measuring what
    security costs (docs/benchmark.md), in a state directory of its own."""
    return [
        f"listeners=PLAINTEXT://127.0.0.1:{settings.kafka_port},CONTROLLER://127.0.0.1:{settings.controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{settings.kafka_port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    ]


def write_kafka_config(settings: Settings) -> Path:
    data = settings.kafka_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = private_dir(settings.kafka_dir) / "server.properties"  # it holds passwords
    config.touch(mode=0o600)
    config.chmod(0o600)
    config.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{settings.controller_port}",
                *(plain_listener_lines(settings) if settings.kafka_plaintext else secure_listener_lines(settings)),
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
    if not settings.kafka_plaintext:
        ensure_tls(settings)
    if read_pid(pid_file) and kafka_metadata_brokers(settings) > 0:
        say(f"Kafka already running on {settings.bootstrap_servers}")
        return
    if read_pid(pid_file):
        raise StackError(
            "the local broker is running but does not answer as this stack configures it (an older stack's, or a plain one): "
            "run `python3 deploy/local/stack.py down kafka`, then `up` again"
        )
    if port_open(settings.kafka_port) or port_open(settings.controller_port):
        raise StackError(
            f"port {settings.kafka_port} or {settings.controller_port} on 127.0.0.1 is taken by another process: "
            "stop it, or set CLOUDWALLET_KAFKA_PORT to a free port"
        )
    java = kafka_java()
    ensure_kafka_jars(settings)
    config = write_kafka_config(settings)
    classpath = f"{settings.kafka_libs}/*"
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    format_kafka_storage(settings, java=java, classpath=classpath, config=config)
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
        if kafka_metadata_brokers(settings) > 0:
            say(f"Kafka answers metadata requests ({time.monotonic() - deadline + 90:.1f}s)")
            return
        time.sleep(0.3)
    raise StackError(f"Kafka did not answer metadata requests within 90 s; see {log}")


def format_kafka_storage(settings: Settings, *, java: str, classpath: str, config: Path) -> None:
    """Format the storage once, with a SCRAM login for every user. Storage formatted by an older
    layout of this stack (no SASL users) is a local broker's data: it is formatted again."""
    data = settings.kafka_dir / "data"
    layout = settings.kafka_dir / "security-layout"
    wanted = "plaintext" if settings.kafka_plaintext else KAFKA_SECURITY_LAYOUT
    if (data / "meta.properties").exists():
        if layout.exists() and layout.read_text().strip() == wanted:
            return
        say(f"the local broker's storage was not made for {wanted}: formatting it again (its topics are dropped)")
        shutil.rmtree(data)
        data.mkdir(parents=True)
    scram = [f"--add-scram={SCRAM_MECHANISM}=[name={user},password={secret(settings, f'kafka-{user}')}]" for user in KAFKA_USERS]
    done = subprocess.run(
        [java, "-cp", classpath, "kafka.tools.StorageTool", "format", f"--cluster-id={kafka_cluster_id()}", "-c", str(config), *scram],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise StackError(f"formatting Kafka storage failed:\n{done.stdout}{done.stderr}")
    layout.write_text(wanted)


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
        # initdb runs as the cluster's owner, who must be able to read the password file.
        pwfile = settings.pg_dir / "initdb.pw"
        pwfile.unlink(missing_ok=True)
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
        with os.fdopen(fd, "w") as out:
            out.write(secret(settings, "pg-postgres") + "\n")
        if owner:
            shutil.chown(pwfile, owner)
        try:
            done = subprocess.run(
                _as_owner(owner, [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile), "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"]),
                capture_output=True,
                text=True,
            )
        finally:
            pwfile.unlink(missing_ok=True)
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
    _pg_require_passwords(settings, bindir, data)
    _pg_ensure_roles_and_db(settings, bindir)


def _psql(settings: Settings, bindir: Path, sql: str, *, trust_socket: bool = False) -> str:
    """Run SQL as the superuser. The SQL goes on stdin (a password in it never shows in `ps`);
    the login is scram-sha-256 with the superuser's own passfile (or, once, the old trusted
    socket of a cluster made before this stack required passwords)."""
    host = str(settings.pg_dir / "run") if trust_socket else "127.0.0.1"
    command = [str(bindir / "psql"), "-h", host, "-p", str(settings.pg_port), "-U", "postgres", "-d", "postgres", "-tAq", "-v", "ON_ERROR_STOP=1", "-f", "-"]
    if trust_socket:
        command = _as_owner(_pg_owner(), command)
    env = dict(os.environ, PGPASSFILE=str(pgpass_file(settings, "postgres")))
    done = subprocess.run(command, input=sql, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise StackError(f"psql failed:\n{done.stderr}")
    return done.stdout.strip()


# The roles of the app: the owner (runs migrations, owns the schema, may create test databases),
# and the two non-owner roles the migrations grant to (processor/storage/migrations, 0005).
DB_ROLES = {
    DB_USER: "LOGIN CREATEDB NOSUPERUSER NOCREATEROLE",
    # BYPASSRLS: it applies batches across projects and writes history with COPY, which
    # PostgreSQL refuses under row-level security (the gateway's wall, migration 0005).
    "cloudwallet_processor": "LOGIN NOCREATEDB NOSUPERUSER NOCREATEROLE BYPASSRLS",
    "cloudwallet_gateway": "LOGIN NOCREATEDB NOSUPERUSER NOCREATEROLE",
}


def pgpass_file(settings: Settings, role: str) -> Path:
    """A libpq passfile holding only `role`'s password (mode 0600, as libpq requires)."""
    path = settings.secrets_dir / f"pgpass-{role}"
    # Any port on 127.0.0.1: tests reach the server through proxies on other ports too.
    line = f"127.0.0.1:*:*:{role}:{secret(settings, f'pg-{role}')}\n"
    if not path.exists() or path.read_text() != line:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(line)
    return path


def _pg_require_passwords(settings: Settings, bindir: Path, data: Path) -> None:
    """A cluster made by an older stack trusted local users: give the superuser its generated
    password over the trusted socket, then make every line of pg_hba.conf scram-sha-256."""
    hba = data / "pg_hba.conf"
    text = hba.read_text()
    rules = [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not any("trust" in rule for rule in rules):
        return
    say("PostgreSQL trusted local users: requiring scram-sha-256 passwords from now on")
    password = secret(settings, "pg-postgres")
    _psql(settings, bindir, f"SET password_encryption = 'scram-sha-256'; ALTER ROLE postgres PASSWORD '{password}';", trust_socket=True)
    lines = [line.replace("trust", "scram-sha-256") if not line.lstrip().startswith("#") else line for line in text.splitlines()]
    hba.write_text("\n".join(lines) + "\n")
    done = subprocess.run(_as_owner(_pg_owner(), [str(bindir / "pg_ctl"), "-D", str(data), "reload"]), capture_output=True, text=True)
    if done.returncode != 0:
        raise StackError(f"pg_ctl reload failed:\n{done.stdout}{done.stderr}")
    time.sleep(0.5)  # the postmaster re-reads pg_hba.conf on SIGHUP


def _pg_ensure_roles_and_db(settings: Settings, bindir: Path) -> None:
    statements = ["SET password_encryption = 'scram-sha-256';"]
    for role, options in DB_ROLES.items():
        password = secret(settings, f"pg-{role}")
        statements.append(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role}; END IF; END $$;"
            f"ALTER ROLE {role} {options} PASSWORD '{password}';"
        )
        pgpass_file(settings, role)
    _psql(settings, bindir, "\n".join(statements))
    if _psql(settings, bindir, f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'") != "1":
        _psql(settings, bindir, f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
    # Only the owner may create objects; the app's roles get what the migrations grant.
    _psql(settings, bindir, f"REVOKE ALL ON DATABASE {DB_NAME} FROM PUBLIC; GRANT CONNECT ON DATABASE {DB_NAME} TO {', '.join(DB_ROLES)};")


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
        return _psql(settings, bindir, "SHOW server_version")
    except StackError:
        return None


# ------------------------------------------------------------------------------------ commands


# The database role each Kafka role connects as (a client needs no database).
DATABASE_ROLES = {"admin": DB_USER, "processor": "cloudwallet_processor", "gateway": "cloudwallet_gateway", "client": None}


def role_env(settings: Settings, role: str) -> dict[str, str]:
    """What `role` needs to connect: no password itself, only the files that hold them."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "CLOUDWALLET_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"} if settings.kafka_plaintext else {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "CLOUDWALLET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CLOUDWALLET_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
        "CLOUDWALLET_KAFKA_USERNAME": role,
        "CLOUDWALLET_KAFKA_PASSWORD_FILE": str(secret_file(settings, f"kafka-{role}")),
        "CLOUDWALLET_KAFKA_CA_FILE": str(settings.ca_file),
    }
    database_role = DATABASE_ROLES[role]
    if database_role is not None:
        env["DATABASE_URL"] = settings.database_url_for(database_role)
        # The master signing secret: the processor checks signatures with it, the gateway and
        # the operator make signing keys with it (schemas/signing.py). Never a client's.
        env["CLOUDWALLET_SIGNING_MASTER_KEY_FILE"] = str(secret_file(settings, "signing-master", nbytes=48))
    return env


# Where the services are may be set from outside; who connects never is (a shell holding the
# operator's settings must not turn `env --as gateway` into the operator).
LOCATION_SETTINGS = ("KAFKA_BOOTSTRAP_SERVERS",)


def print_env(settings: Settings, *, role: str = "client") -> None:
    """Print `role`'s settings as shell exports; a location already in the environment wins."""
    for name, value in role_env(settings, role).items():
        shown = (os.environ.get(name) or value) if name in LOCATION_SETTINGS else value
        print(f"export {name}={shlex.quote(shown)}")


def status(settings: Settings) -> dict[str, object]:
    kafka_ready = (settings.kafka_plaintext or settings.ca_file.exists()) and kafka_metadata_brokers(settings) > 0
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


def write_env_file(settings: Settings, *, role: str) -> Path:
    """`env --as ROLE` in a file only the owner reads (for CLOUDWALLET_PROCESSOR_ENV_FILE)."""
    path = private_dir(settings.secrets_dir) / f"{role}.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.writelines(f"export {name}={shlex.quote(value)}\n" for name, value in role_env(settings, role).items())
    return path


def env_command(args: list[str], *, to_file: bool = False) -> int:
    role = args[1] if len(args) == 2 and args[0] == "--as" else "client" if not args else None
    if role not in DATABASE_ROLES:
        print(f"[stack] error: usage: stack.py env|env-file [--as {'|'.join(DATABASE_ROLES)}]", file=sys.stderr)
        return 2
    try:
        if to_file:
            print(write_env_file(load_settings(), role=role))
        else:
            print_env(load_settings(), role=role)
    except StackError as error:
        print(f"[stack] error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command in ("env", "env-file"):
        return env_command(argv[2:], to_file=command == "env-file")
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
            say('settings for each role: eval "$(python3 deploy/local/stack.py env --as admin|processor|gateway|client)"')
        elif command == "down":
            if only != "postgres":
                kafka_down(settings)
            if only != "kafka":
                pg_down(settings)
        elif command == "status":
            info = status(settings)
            print(json.dumps(info, indent=2))
            return 0 if info["kafka"]["running"] and info["postgres"]["running"] else 3
        else:
            print(__doc__)
            return 2
    except StackError as error:
        print(f"[stack] error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
