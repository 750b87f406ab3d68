"""Schemathesis against the gateway's own OpenAPI document: no input gives a 5xx.

Every operation, valid (positive) and invalid (negative) inputs, with an operator key, against
a real gateway, processor, Kafka and PostgreSQL. Bounded: CLOUDWALLET_FUZZ_EXAMPLES examples
per operation and mode (default 4), so the run takes seconds.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from .gateway_support import GatewayStack, gateway_stack, open_system_wallet, setup_project  # noqa: F401

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("CLOUDWALLET_FUZZ_EXAMPLES", "4"))


def test_openapi_fuzzing_finds_no_server_error(gateway_stack: GatewayStack) -> None:  # noqa: F811
    api = gateway_stack.api()
    # A project with data, so that positive cases aimed at it reach the processor and the reads.
    project = "fuzz"
    setup_project(api, project)
    open_system_wallet(api, project, "w1")
    api.ok("POST", f"/projects/{project}/customers", json={"customer_id": "c1"})

    schema = schemathesis.openapi.from_url(f"{gateway_stack.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 40  # the 28 seed endpoints, the request-result read, the 3 signing-key endpoints, balance at an instant, statement, reversal, 5 of holds
    headers = {"X-Api-Key": gateway_stack.operator_key}
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    calls = 0

    for operation in operations:
        fixed = {"projectId": project} if "{projectId}" in operation.path else None
        for mode, path_parameters in (
            (GenerationMode.POSITIVE, None),
            (GenerationMode.POSITIVE, fixed),
            (GenerationMode.NEGATIVE, None),
        ):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
            def call(case: schemathesis.Case) -> None:
                nonlocal calls
                calls += 1
                response = case.call(base_url=gateway_stack.base_url, headers=headers, timeout=60)
                statuses[response.status_code] += 1
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} {case.query} {case.body!r} -> {response.status_code} {response.text[:300]}")

            call()

    print(f"fuzzing: {calls} calls, statuses {sorted(statuses.items())}")
    assert calls >= len(operations) * 2
    # The generated input reached the app both ways: accepted and refused.
    assert any(200 <= s < 300 for s in statuses) and any(400 <= s < 500 for s in statuses)
    assert not failures, "\n".join(failures[:20])
