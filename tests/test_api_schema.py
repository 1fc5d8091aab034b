"""Schemathesis against the running service's /openapi.json: generated requests (valid and
invalid) to every operation, with a project key over known data; no server error, and every
documented response matches its schema."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.api_helpers import seed
from tests.conftest import Service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api_schema(service: Service) -> Any:
    seed(service)  # data to find, so the success paths are exercised too
    return schemathesis.openapi.from_url(
        f"{service.api_url}/openapi.json", headers={"Authorization": f"Bearer {service.key}"}
    )


def test_api_conforms_to_its_spec(api_schema: Any, service: Service) -> None:
    """One bounded Hypothesis run per operation (schemathesis's pytest loader needs pytest
    internals that pytest 9 no longer has, so operations are walked here)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert any(op.label == "POST /api/v1/metrics/inferences/list" for op in operations)
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {service.key}"},
                checks=[not_a_server_error, response_schema_conformance],
                timeout=30,
            )

        try:
            check()
        except (Exception, BaseExceptionGroup) as e:  # every operation runs; each failure is named
            failures.append(f"{operation.label}: {e}")
    assert not failures, "\n\n".join(failures)
