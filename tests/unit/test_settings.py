"""Settings are checked at start-up, with errors that name the environment variable."""

import pytest

from processor.settings import ProcessorSettings, SettingsError, load

GOOD = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
    "DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/db",
    "CLOUDWALLET_KAFKA_USERNAME": "processor",
    "CLOUDWALLET_KAFKA_PASSWORD": "s3cret-of-the-processor",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in list(__import__("os").environ):
        if name.startswith(("CLOUDWALLET_", "OTEL_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults_and_url_normalisation(clean_env):
    for name, value in GOOD.items():
        clean_env.setenv(name, value)
    settings = load(ProcessorSettings)
    assert settings.database_url == "postgresql+psycopg://u:p@127.0.0.1:5432/db"
    assert (settings.requests_topic, settings.results_topic, settings.dlq_topic) == ("wallet.requests", "wallet.results", "wallet.requests.dlq")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "no-port"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"CLOUDWALLET_BATCH_MAX_RECORDS": "0"}, "CLOUDWALLET_BATCH_MAX_RECORDS"),
        ({"CLOUDWALLET_REQUESTS_TOPIC": "bad topic!"}, "CLOUDWALLET_REQUESTS_TOPIC"),
        ({"CLOUDWALLET_RESULTS_TOPIC": "wallet.requests"}, "three different topics"),
        ({"CLOUDWALLET_REQUESTS_PARTITIONS": "many"}, "CLOUDWALLET_REQUESTS_PARTITIONS"),
        ({"CLOUDWALLET_KAFKA_SECURITY_PROTOCOL": "TLS"}, "CLOUDWALLET_KAFKA_SECURITY_PROTOCOL"),
        ({"CLOUDWALLET_KAFKA_SASL_MECHANISM": "GSSAPI"}, "CLOUDWALLET_KAFKA_SASL_MECHANISM"),
        ({"CLOUDWALLET_KAFKA_USERNAME": ""}, "CLOUDWALLET_KAFKA_USERNAME"),
        ({"CLOUDWALLET_KAFKA_PASSWORD": ""}, "CLOUDWALLET_KAFKA_PASSWORD_FILE"),
        ({"CLOUDWALLET_KAFKA_CA_FILE": "/nonexistent/ca.pem"}, "CLOUDWALLET_KAFKA_CA_FILE"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT: must be an http"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:99999"}, "OTEL_EXPORTER_OTLP_ENDPOINT: must be an http"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "grpc://collector:4317"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: must be an http"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL (or OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) is 'grpc'"),
    ],
)
def test_bad_settings_name_the_variable(clean_env, env, named):
    for name, value in {**GOOD, **env}.items():
        clean_env.setenv(name, value)
    if not env:
        clean_env.delenv("KAFKA_BOOTSTRAP_SERVERS")
    with pytest.raises(SettingsError) as error:
        load(ProcessorSettings)
    assert named in str(error.value)


def test_kafka_is_sasl_over_tls_by_default_and_the_password_is_never_shown(clean_env):
    for name, value in GOOD.items():
        clean_env.setenv(name, value)
    settings = load(ProcessorSettings)
    options = settings.kafka.options()
    assert (options["security_protocol"], options["sasl_mechanism"], options["sasl_plain_username"]) == ("SASL_SSL", "SCRAM-SHA-512", "processor")
    assert options["ssl_context"].check_hostname  # the broker's certificate and name are verified
    assert options["sasl_plain_password"] == "s3cret-of-the-processor"
    for shown in (repr(settings), str(settings), repr(settings.kafka), str(settings.model_dump())):
        assert "s3cret" not in shown


def test_the_password_can_come_from_a_file(clean_env, tmp_path):
    secret = tmp_path / "kafka.password"
    secret.write_text("from-a-file\n")
    for name, value in GOOD.items():
        clean_env.setenv(name, value)
    clean_env.delenv("CLOUDWALLET_KAFKA_PASSWORD")
    clean_env.setenv("CLOUDWALLET_KAFKA_PASSWORD_FILE", str(secret))
    settings = load(ProcessorSettings)
    assert settings.kafka.options()["sasl_plain_password"] == "from-a-file"
    child = settings.environment()  # a child process reads the same file
    assert child["CLOUDWALLET_KAFKA_PASSWORD_FILE"] == str(secret) and "CLOUDWALLET_KAFKA_PASSWORD" not in child
    clean_env.setenv("CLOUDWALLET_KAFKA_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="CLOUDWALLET_KAFKA_PASSWORD_FILE"):
        load(ProcessorSettings)


def test_a_plain_broker_needs_no_login(clean_env):
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    clean_env.setenv("DATABASE_URL", GOOD["DATABASE_URL"])
    clean_env.setenv("CLOUDWALLET_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    options = load(ProcessorSettings).kafka.options()
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("env", "enabled", "url"),
    [
        ({}, False, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False, None),  # a deployment's empty placeholder: off
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}, True, "http://collector:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c.example/otlp/traces"}, True, "https://c.example/otlp/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:2/t"}, True, "http://b:2/t"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_SDK_DISABLED": "true"}, False, None),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, False, None),  # meant for other services: no traces here, no error
    ],
)
def test_traces_are_off_unless_an_otlp_endpoint_is_set(clean_env, env, enabled, url):
    for name, value in {**GOOD, **env}.items():
        clean_env.setenv(name, value)
    settings = load(ProcessorSettings)
    assert settings.traces_enabled is enabled
    if url is not None:
        assert settings.traces_url == url


def test_where_traces_go_is_logged_without_credentials(clean_env):
    for name, value in {**GOOD, "OTEL_EXPORTER_OTLP_ENDPOINT": "https://user:token@collector.example:4318/base"}.items():
        clean_env.setenv(name, value)
    assert load(ProcessorSettings).traces_destination == "https://collector.example:4318"
