"""Fuzz the HTTP API from its own OpenAPI schema (schemathesis) against a real server.

Every operation in ``/openapi.json`` gets generated requests, valid (positive) and invalid
(negative) ones; each answer must not be a 5xx, must use a status code the schema declares,
and must match the declared body schema and content type; a request that breaks the schema
must be refused with a 4xx. The number of cases run is printed and, when
``SOFTSENSOR_FUZZ_REPORT`` names a file (``python -m bench.fuzz`` does), written there as JSON.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.conftest import Published, ServerProcess, start_server

TOKEN = "fuzz-admin-token-7f3e"  # admin endpoints are on, so they are fuzzed past the guard too
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Examples per operation and generation mode: ~30 operations x 2 modes x this, a few seconds
# each thousand. SOFTSENSOR_FUZZ_EXAMPLES raises it for a longer run (bench/fuzz.py).
EXAMPLES = int(os.environ.get("SOFTSENSOR_FUZZ_EXAMPLES", "25"))
# Three passes: as the schema allows (positive), breaking it (negative), and positive cases
# aimed at the served model (its name in paths, its signals in bodies), which reach the
# data plane instead of stopping at "no such model".
PASSES = (
    (GenerationMode.POSITIVE, False),
    (GenerationMode.NEGATIVE, False),
    (GenerationMode.POSITIVE, True),
)
SERVED = {"name": "tiny", "version": "v1"}
TAG_MAP = Path(__file__).parent / "golden" / "pi_predict_tagmap.yaml"
SIGNALS = ("a", "b", "q")  # what the test model reads (tests/conftest.py TINY_SPEC)


def _aimable(operation: Any) -> bool:
    return "{" in operation.path or operation.path in ("/v1/predict", "/v1/lab-results")


@pytest.fixture
def fuzz_server(published: Published, tmp_path: Path) -> Iterator[ServerProcess]:
    """A real `softsensor serve` on the test model, admin token set, watcher on, a tag map
    for it (so predict's PI Web API shapes are fuzzed past "no tag map")."""
    import shutil

    root = tmp_path / "models"
    shutil.copytree(published.root, root)  # promote/rollback may write the pointer
    server = start_server(
        root,
        tmp_path / "state",
        tmp_path / "server.log",
        {
            "SOFTSENSOR_ADMIN_TOKEN": TOKEN,
            "SOFTSENSOR_WATCH_INTERVAL_S": "1",
            "SOFTSENSOR_TAG_MAPS": json.dumps([str(TAG_MAP)]),
        },
    )
    try:
        server.wait_until("/v2/health/ready")
        yield server
    finally:
        server.stop()


def _aim(operation: Any, case: Any) -> None:
    """Point a generated request at the served model, so it gets past "no such model".

    Path names become the served model and version; predict and lab-result bodies name it,
    and predict records carry its signals (keeping the generated values, nulls included).
    """
    for key in case.path_parameters or {}:
        case.path_parameters[key] = SERVED[key]
    if case.query and "model" in case.query:
        case.query["model"] = SERVED["name"]
    body: Any = case.body
    if operation.path not in ("/v1/predict", "/v1/lab-results") or not isinstance(body, dict):
        return
    if "model" in body:
        body["model"] = SERVED["name"]
    records = body.get("records")
    for record in records if isinstance(records, list) else []:
        values = record.get("values") if isinstance(record, dict) else None
        if isinstance(values, dict):
            sent = list(values.values()) or [0.5]
            record["values"] = {s: sent[i % len(sent)] for i, s in enumerate(SIGNALS)}
    columns = body.get("columns")
    if isinstance(columns, dict):
        sent_columns = list(columns.values()) or [[0.5]]
        body["columns"] = {s: sent_columns[i % len(sent_columns)] for i, s in enumerate(SIGNALS)}


def _run_operation(
    operation: Any, mode: GenerationMode, aimed: bool, session: requests.Session, url: str
) -> tuple[int, Counter[int]]:
    """Run one operation's generated cases; returns (cases, statuses seen)."""
    statuses: Counter[int] = Counter()
    cases = 0

    @hypothesis.settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal cases
        cases += 1
        if aimed:
            _aim(operation, case)
        checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
        response = case.call_and_validate(base_url=url, session=session, checks=checks)
        statuses[response.status_code] += 1

    try:
        run()
    except hypothesis.errors.Unsatisfiable:  # nothing to negate: no parameters, no body
        assert mode is GenerationMode.NEGATIVE and cases == 0
    return cases, statuses


@pytest.mark.slow
def test_api_fuzzed_from_its_openapi_schema(fuzz_server: ServerProcess) -> None:
    """No 5xx, every answer as the schema declares it, schema-breaking input refused."""
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    started = time.monotonic()
    per_operation: dict[str, dict[str, Any]] = {}
    total = 0
    with requests.Session() as session:
        session.headers["authorization"] = f"Bearer {TOKEN}"
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()
            for mode, aimed in PASSES:
                if aimed and not _aimable(operation):
                    continue
                cases, statuses = _run_operation(operation, mode, aimed, session, fuzz_server.url)
                total += cases
                kind = f"{mode.value}, aimed" if aimed else mode.value
                per_operation[f"{operation.label} [{kind}]"] = {
                    "cases": cases,
                    "statuses": {str(k): v for k, v in sorted(statuses.items())},
                }
    seconds = time.monotonic() - started
    assert "Traceback" not in fuzz_server.output(), fuzz_server.output()[-3000:]
    print(f"\nschemathesis: {total} cases, {len(per_operation)} operation/modes, {seconds:.0f} s")
    report = os.environ.get("SOFTSENSOR_FUZZ_REPORT")
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(
            json.dumps(
                {
                    "cases": total,
                    "examples_per_operation_and_mode": EXAMPLES,
                    "seconds": round(seconds, 1),
                    "schemathesis": schemathesis.__version__,
                    "checks": [c.__name__ for c in CHECKS] + ["negative_data_rejection"],
                    "operations": per_operation,
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
    assert total >= EXAMPLES * 10  # the schema really was explored, not skipped
