"""Settings, read from the environment and checked at start-up.

`KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL` and OpenTelemetry's `OTEL_*` have their usual names;
everything else is `CLOUDWALLET_<NAME>`. A bad value stops the process with an error that names the variable.
"""

from __future__ import annotations

import re
import sys
from functools import cached_property
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from processor.client.connection import KafkaConnection, KafkaConnectionError, SaslMechanism, SecurityProtocol, read_secret_file
from schemas.signing import SigningError, SigningKey, Verifier, read_master

S = TypeVar("S", bound=BaseSettings)

TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class SettingsError(RuntimeError):
    """A setting is missing or invalid; the message names the environment variable."""


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLOUDWALLET_", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        validation_alias=AliasChoices("DATABASE_URL", "CLOUDWALLET_DATABASE_URL"),
        description="SQLAlchemy URL of the PostgreSQL database, e.g. postgresql+psycopg://user:pw@host:5432/db",
    )
    db_pool_size: int = Field(default=4, ge=1, le=64)

    @field_validator("database_url")
    @classmethod
    def _psycopg_url(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        if not value.startswith("postgresql+psycopg://"):
            raise ValueError("must be a PostgreSQL URL (postgresql+psycopg://user:password@host:port/database)")
        return value


class KafkaSettings(BaseSettings):
    """Where Kafka is and how to log in to it (SASL over TLS unless told otherwise)."""

    model_config = SettingsConfigDict(env_prefix="CLOUDWALLET_", extra="ignore", populate_by_name=True)

    bootstrap_servers: str = Field(
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "CLOUDWALLET_KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, host:port[,host:port...]",
    )
    kafka_security_protocol: SecurityProtocol = Field(default="SASL_SSL", description="SASL_SSL, SSL, SASL_PLAINTEXT or PLAINTEXT")
    kafka_sasl_mechanism: SaslMechanism = Field(default="SCRAM-SHA-512", description="SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN")
    kafka_username: str | None = Field(default=None, description="SASL user (the Kafka principal is User:<name>)")
    kafka_password: SecretStr | None = Field(default=None, description="SASL password; prefer CLOUDWALLET_KAFKA_PASSWORD_FILE")
    kafka_password_file: Path | None = Field(default=None, description="a file holding the SASL password")
    kafka_ca_file: Path | None = Field(default=None, description="PEM file of the CA that signed the broker's certificate (default: the system's)")

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{server!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _kafka_connection_works(self) -> "KafkaSettings":
        self.kafka  # built once here, so a bad combination stops the process at start-up
        return self

    @cached_property
    def kafka(self) -> KafkaConnection:
        password = self.kafka_password
        if password is None and self.kafka_password_file is not None:
            password = read_secret_file(self.kafka_password_file, setting="CLOUDWALLET_KAFKA_PASSWORD_FILE")
        try:
            return KafkaConnection(
                bootstrap_servers=self.bootstrap_servers,
                security_protocol=self.kafka_security_protocol,
                sasl_mechanism=self.kafka_sasl_mechanism,
                username=self.kafka_username,
                password=password,
                ca_file=self.kafka_ca_file,
            )
        except KafkaConnectionError as error:
            raise ValueError(str(error)) from None


class SigningSettings(BaseSettings):
    """Signed requests (schemas/signing.py): what the processor checks, and a client's key."""

    model_config = SettingsConfigDict(env_prefix="CLOUDWALLET_", extra="ignore", populate_by_name=True)

    require_signatures: bool = Field(default=True, description="refuse (Unauthorized) every request that is not signed")
    signing_master_key_file: Path | None = Field(default=None, description="the master signing secret (processor, gateway, operator tools)")
    signing_key: SecretStr | None = Field(default=None, description="a client's signing key token (cws_...); prefer CLOUDWALLET_SIGNING_KEY_FILE")
    signing_key_file: Path | None = Field(default=None, description="a file holding a client's signing key token")

    @model_validator(mode="after")
    def _signing_key_readable(self) -> "SigningSettings":
        self.client_signing_key  # a bad token stops the process at start-up
        return self

    @cached_property
    def client_signing_key(self) -> SigningKey | None:
        """The key this process signs its requests with (None: it sends them unsigned)."""
        token = self.signing_key
        if token is None and self.signing_key_file is not None:
            token = read_secret_file(self.signing_key_file, setting="CLOUDWALLET_SIGNING_KEY_FILE")
        if token is None:
            return None
        try:
            return SigningKey.from_token(token.get_secret_value())
        except SigningError as error:
            raise ValueError(f"CLOUDWALLET_SIGNING_KEY: {error}") from None

    def master_secret(self) -> bytes:
        if self.signing_master_key_file is None:
            raise SigningError("CLOUDWALLET_SIGNING_MASTER_KEY_FILE is not set: it names the master signing secret's file")
        return read_master(self.signing_master_key_file)

    def verifier(self) -> Verifier:
        master = self.master_secret() if self.signing_master_key_file is not None or self.require_signatures else None
        return Verifier(master=master, required=self.require_signatures)


def _is_http_url(text: str) -> bool:
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in 0..65535
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class TracingSettings(BaseSettings):
    """OpenTelemetry traces (processor/telemetry.py): off unless an OTLP endpoint is set. These
    are OpenTelemetry's own variables, checked here so that a bad one stops the process at
    start; the SDK reads the rest itself (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER,
    OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_*)."""

    model_config = SettingsConfigDict(env_prefix="CLOUDWALLET_", extra="ignore", populate_by_name=True)

    otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT", description="OTLP/HTTP collector base URL (traces go to <it>/v1/traces)"
    )
    otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", description="OTLP/HTTP traces URL, used as is"
    )
    otlp_protocol: str = Field(
        default="http/protobuf",
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        description="only OTLP over HTTP with protobuf is built in (a collector's port 4318); checked when traces are on",
    )
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED", description="true: no traces whatever else is set")

    @field_validator("otlp_endpoint", "otlp_traces_endpoint", mode="before")
    @classmethod
    def _http_url(cls, value: object) -> object:
        if value is None or value == "":
            return None
        if not _is_http_url(str(value)):
            raise ValueError("must be an http:// or https:// URL of an OTLP/HTTP collector, e.g. http://otel-collector:4318")
        return value

    @model_validator(mode="after")
    def _protocol_built_in(self) -> "TracingSettings":
        # Only when traces are on: a cluster-wide OTEL_EXPORTER_OTLP_PROTOCOL=grpc meant for other
        # services must not stop a processor that exports nothing.
        if self.traces_enabled and self.otlp_protocol != "http/protobuf":
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL (or OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) is {self.otlp_protocol!r}: only 'http/protobuf' "
                "is built in; point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's OTLP/HTTP port (4318)"
            )
        return self

    @property
    def traces_enabled(self) -> bool:
        return not self.otel_sdk_disabled and (self.otlp_endpoint or self.otlp_traces_endpoint) is not None

    @property
    def traces_url(self) -> str:
        """Where spans are sent: the traces endpoint as given, else the base endpoint's /v1/traces
        (as the OTLP specification says; given to the exporter, which would read only the
        OTEL_* spellings of these settings itself)."""
        if self.otlp_traces_endpoint:
            return self.otlp_traces_endpoint
        return f"{(self.otlp_endpoint or '').rstrip('/')}/v1/traces"

    @property
    def traces_destination(self) -> str:
        """Where traces go, without credentials or path (for the log)."""
        url = urlsplit(self.traces_url)
        return f"{url.scheme}://{url.hostname}{f':{url.port}' if url.port else ''}"


class ProcessorSettings(DatabaseSettings, KafkaSettings, SigningSettings, TracingSettings):
    requests_topic: str = "wallet.requests"
    results_topic: str = "wallet.results"
    dlq_topic: str = "wallet.requests.dlq"
    requests_partitions: int = Field(default=8, ge=1, le=10_000)
    results_partitions: int = Field(default=8, ge=1, le=10_000)
    topic_replication_factor: int = Field(default=1, ge=1, le=32, description="replication factor of topics the app creates")
    consumer_group: str = "cloudwallet-processor"
    batch_max_records: int = Field(default=1000, ge=1, le=100_000, description="records per poll and per database transaction")
    batch_linger_ms: int = Field(default=5, ge=0, le=10_000, description="how long a poll waits to fill a batch")
    max_request_bytes: int = Field(default=1_048_576, ge=1024, description="larger records go to the DLQ")
    create_topics: bool = Field(default=True, description="create the topics at start when missing")
    hold_sweep_seconds: float = Field(
        default=5.0, ge=0, le=3600, description="how often holds past their expiry on idle wallets get a hold.expire (0: never)"
    )
    hold_sweep_limit: int = Field(default=1000, ge=1, le=100_000, description="hold.expire records published per sweep, at most")
    health_port: int = Field(default=0, ge=0, le=65_535, description="port of /health/live, /health/ready and /metrics (0: not served)")
    health_host: str = Field(default="127.0.0.1", description="address the health and metrics port listens on (0.0.0.0 in a container)")
    stuck_batch_seconds: float = Field(default=120.0, gt=0, le=86_400, description="a batch in stage 1 longer than this makes the processor not ready")

    @field_validator("requests_topic", "results_topic", "dlq_topic")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not TOPIC_NAME.fullmatch(value):
            raise ValueError("a Kafka topic name is 1-249 characters of letters, digits, '.', '_' and '-'")
        return value

    def environment(self) -> dict[str, str]:
        """These settings as the environment of a `cloudwallet run` child process."""
        kafka = self.kafka.environment()
        if self.kafka_password_file is not None:  # the child reads the file too: no password in its environment
            kafka.pop("CLOUDWALLET_KAFKA_PASSWORD", None)
            kafka["CLOUDWALLET_KAFKA_PASSWORD_FILE"] = str(self.kafka_password_file)
        return {
            **kafka,
            "DATABASE_URL": self.database_url,
            "CLOUDWALLET_REQUESTS_TOPIC": self.requests_topic,
            "CLOUDWALLET_RESULTS_TOPIC": self.results_topic,
            "CLOUDWALLET_DLQ_TOPIC": self.dlq_topic,
            "CLOUDWALLET_CONSUMER_GROUP": self.consumer_group,
            "CLOUDWALLET_REQUESTS_PARTITIONS": str(self.requests_partitions),
            "CLOUDWALLET_RESULTS_PARTITIONS": str(self.results_partitions),
            "CLOUDWALLET_MAX_REQUEST_BYTES": str(self.max_request_bytes),
            "CLOUDWALLET_HOLD_SWEEP_SECONDS": str(self.hold_sweep_seconds),
            "CLOUDWALLET_HOLD_SWEEP_LIMIT": str(self.hold_sweep_limit),
            "CLOUDWALLET_HEALTH_PORT": str(self.health_port),
            "CLOUDWALLET_HEALTH_HOST": self.health_host,
            "CLOUDWALLET_STUCK_BATCH_SECONDS": str(self.stuck_batch_seconds),
            "CLOUDWALLET_REQUIRE_SIGNATURES": str(self.require_signatures).lower(),
            **({"CLOUDWALLET_SIGNING_MASTER_KEY_FILE": str(self.signing_master_key_file)} if self.signing_master_key_file else {}),
        }

    @model_validator(mode="after")
    def _distinct_topics(self) -> "ProcessorSettings":
        if len({self.requests_topic, self.results_topic, self.dlq_topic}) != 3:
            raise ValueError("requests, results and DLQ topics must be three different topics")
        return self


_ENV_NAMES = {
    "database_url": "DATABASE_URL",
    "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
}


def load(settings_class: type[DatabaseSettings] = ProcessorSettings, **overrides: object) -> DatabaseSettings:
    """Read settings from the environment, raising SettingsError naming each bad variable."""
    try:
        return settings_class(**overrides)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            message = str(item["msg"]).removeprefix("Value error, ")
            if not item["loc"]:  # a rule across settings: its message names them
                problems.append(message)
                continue
            field = str(item["loc"][0])
            env = _ENV_NAMES.get(field) or (field if field.isupper() else f"CLOUDWALLET_{field.upper()}")  # an alias is its own name
            problems.append(f"{env}: {message}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems)) from None


LOCAL_STACK_HINT = 'for the local stack: eval "$(python3 deploy/local/stack.py env --as ROLE)", ROLE = admin, processor, gateway or client'


def load_or_exit(settings_class: type[S], *, program: str, hint: str = LOCAL_STACK_HINT, **overrides: object) -> S:
    """`load` for a command: on bad settings, print what is wrong (each variable named) and how
    to set them (`hint`), and exit with status 2."""
    try:
        settings = load(settings_class, **overrides)  # type: ignore[arg-type]
    except SettingsError as error:
        print(f"{program}: {error}\n({hint})", file=sys.stderr)
        raise SystemExit(2) from None
    assert isinstance(settings, settings_class)
    return settings
