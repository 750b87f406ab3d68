"""How every client of ours reaches Kafka: the bootstrap servers, TLS and a SASL login.

One value, `KafkaConnection`, carries all of it; the processor, the gateway, the client library,
the CLI, ingest, the benchmark, the fuzzer and the tests build their aiokafka clients from
`connection.options()` and FastStream's broker from `connection.faststream_security()`, so no
client can be started that forgets the security settings.

The default is SASL over TLS with SCRAM-SHA-512: secure unless a deployment says otherwise
(`CLOUDWALLET_KAFKA_SECURITY_PROTOCOL=PLAINTEXT` for a plain broker). OAUTHBEARER is not offered:
aiokafka needs a token provider written against the identity provider, which is deployment code.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import SecretStr

SecurityProtocol = Literal["SASL_SSL", "SSL", "SASL_PLAINTEXT", "PLAINTEXT"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
SECURITY_PROTOCOLS: tuple[str, ...] = get_args(SecurityProtocol)
SASL_MECHANISMS: tuple[str, ...] = get_args(SaslMechanism)


class KafkaConnectionError(ValueError):
    """The connection settings cannot work; the message names the setting to fix."""


@dataclass(frozen=True, kw_only=True)
class KafkaConnection:
    bootstrap_servers: str
    security_protocol: SecurityProtocol = "SASL_SSL"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None  # repr shows '**********', never the password
    ca_file: Path | None = None  # None: the system's trusted CAs

    def __post_init__(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise KafkaConnectionError(f"CLOUDWALLET_KAFKA_SECURITY_PROTOCOL: {self.security_protocol!r} is not one of {', '.join(SECURITY_PROTOCOLS)}")
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise KafkaConnectionError(f"CLOUDWALLET_KAFKA_SASL_MECHANISM: {self.sasl_mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}")
        if self.uses_sasl and not (self.username and self.password and self.password.get_secret_value()):
            raise KafkaConnectionError(
                f"{self.security_protocol} needs a login: set CLOUDWALLET_KAFKA_USERNAME and CLOUDWALLET_KAFKA_PASSWORD_FILE "
                "(or CLOUDWALLET_KAFKA_PASSWORD); for a plain broker set CLOUDWALLET_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"
            )
        if self.ca_file is not None and not self.ca_file.is_file():
            raise KafkaConnectionError(f"CLOUDWALLET_KAFKA_CA_FILE: {self.ca_file} is not a readable file")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """Verifies the broker's certificate and host name (one context shared by all clients)."""
        if not self.uses_tls:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers, "security_protocol": self.security_protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context
        if self.uses_sasl:
            assert self.username is not None and self.password is not None  # checked in __post_init__
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password.get_secret_value(),
            )
        return options

    def faststream_security(self) -> Any:
        """FastStream's security object for a KafkaBroker (None for PLAINTEXT)."""
        from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

        if not self.uses_sasl:
            return BaseSecurity(ssl_context=self.ssl_context) if self.uses_tls else None
        kinds = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}
        assert self.username is not None and self.password is not None
        return kinds[self.sasl_mechanism](
            username=self.username, password=self.password.get_secret_value(), ssl_context=self.ssl_context, use_ssl=self.uses_tls
        )

    def as_user(self, *, username: str, password: SecretStr) -> KafkaConnection:
        """The same cluster, logged in as another principal."""
        return replace(self, username=username, password=password)

    def environment(self) -> dict[str, str]:
        """This connection as the environment of a child process. The password goes by value in
        CLOUDWALLET_KAFKA_PASSWORD: a child's environment is readable only by its user (and root)."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "CLOUDWALLET_KAFKA_SECURITY_PROTOCOL": self.security_protocol,
            "CLOUDWALLET_KAFKA_SASL_MECHANISM": self.sasl_mechanism,
        }
        if self.username:
            env["CLOUDWALLET_KAFKA_USERNAME"] = self.username
        if self.password is not None:
            env["CLOUDWALLET_KAFKA_PASSWORD"] = self.password.get_secret_value()
        if self.ca_file is not None:
            env["CLOUDWALLET_KAFKA_CA_FILE"] = str(self.ca_file)
        return env


def read_secret_file(path: Path, *, setting: str) -> SecretStr:
    """A secret kept in a file (first line, surrounding white space dropped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise KafkaConnectionError(f"{setting}: cannot read {path}: {error.strerror}") from None
    secret = text.strip()
    if not secret:
        raise KafkaConnectionError(f"{setting}: {path} is empty")
    return SecretStr(secret)
