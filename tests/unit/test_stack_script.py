"""The local stack script's own logic (it runs before any virtualenv, so it is loaded by path)."""

from __future__ import annotations

import base64
import importlib.util
import sys
import uuid
from pathlib import Path

import pytest

STACK_PATH = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack.py"
EPHEMERAL_PORTS = range(32768, 61000)  # Linux's default ip_local_port_range


@pytest.fixture(scope="module")
def stack():
    spec = importlib.util.spec_from_file_location("cloudwallet_stack", STACK_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_cluster_ids_never_begin_with_a_dash_over_many_draws(stack):
    ids = [stack.kafka_cluster_id() for _ in range(20_000)]
    assert not [i for i in ids if i.startswith("-")]
    # ~1 in 64 raw draws begins with "-": 20,000 draws would show ~300 of them.
    for cluster_id in ids[:100]:
        assert len(cluster_id) == 22
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_a_draw_that_would_begin_with_a_dash_is_drawn_again(stack, monkeypatch):
    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))  # 0xf8 >> 2 = 62, which base64url spells "-"
    assert base64.urlsafe_b64encode(dash_first.bytes).startswith(b"-")
    plain = uuid.UUID(bytes=b"\x10" + bytes(15))
    draws = iter([dash_first, dash_first, plain])
    monkeypatch.setattr(stack.uuid, "uuid4", lambda: next(draws))
    assert stack.kafka_cluster_id() == base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")


def test_default_ports_are_outside_the_ephemeral_range(stack, monkeypatch):
    for name in ("CLOUDWALLET_KAFKA_PORT", "CLOUDWALLET_PG_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = stack.load_settings()
    for port in (settings.kafka_port, settings.controller_port, settings.pg_port):
        assert port not in EPHEMERAL_PORTS, f"default port {port} is in the ephemeral range"
