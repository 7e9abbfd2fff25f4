"""An outside fuzzer against the API: schemathesis reads /openapi.json and sends what it describes, and
worse; every answer must be no 5xx, a documented status, and match its documented schema."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mnistlab[serve]'")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extra")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mnistlab.serve import create_app  # noqa: E402

CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def api(tiny_run, tmp_path_factory):
    app = create_app(tiny_run[0], collect_dir=tmp_path_factory.mktemp("fuzz") / "mine", max_upload_bytes=200_000,
                     allowed_hosts=["testserver"])  # the name schemathesis's ASGI client sends
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.slow
def test_every_operation_answers_as_documented(api):
    """A few dozen generated requests per operation (schemathesis's pytest plugin is not used: it does not run
    under pytest 9), each checked for a 5xx, an undocumented status or content type, and a schema mismatch."""
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /api/predict", "POST /api/collect", "GET /api/model"}
    for operation in operations:

        @given(operation.as_strategy())
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_as_documented(case):
            case.call_and_validate(checks=CHECKS)

        answers_as_documented()
