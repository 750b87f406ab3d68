"""Settings are checked at start-up, with errors that name the environment variable."""

import pytest

from processor.settings import ProcessorSettings, SettingsError, load

GOOD = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092", "DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/db"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in list(__import__("os").environ):
        if name.startswith("CLOUDWALLET_"):
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
