"""Every example the OpenAPI schema shows is a request the default model answers: posted to a
service serving a model trained on the simulated Column A (the quickstart's default), with the
shipped tag maps (the PI Web API example is read through deploy/tagmaps/column_a.yaml)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.pi_schemas import PiRecordedWrite
from service.contracts.registry import Registry
from tests.service.conftest import make_settings
from training.config import NetworkConfig, TrainConfig
from training.data import load_dataset
from training.experiment import RunConfig, run_experiment
from training.publish import publish
from training.simulator import simulate
from training.spec import load_spec


@pytest.fixture(scope="module")
def column_a_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with a small model named ``column_a`` on one simulated day (the signals
    and lags of the default spec; a few epochs: the examples need its inputs, not accuracy)."""
    tmp = tmp_path_factory.mktemp("column_a")
    data, spec = simulate(1, seed=3, out=tmp / "column_a.csv")
    dataset = load_dataset(load_spec(spec), data)
    cfg = RunConfig(
        method="dense",
        network=NetworkConfig(hidden=(8,)),
        train=TrainConfig(epochs=3, progress=False),
    )
    publish(dataset, run_experiment(dataset, cfg), Registry(tmp / "models"), "column_a")
    return tmp / "models"


REPO = Path(__file__).resolve().parents[2]
QUERY = {"PiStreamset": "?format=piwebapi&answer=piwebapi"}  # how each body shape is posted
TOKEN = "examples-admin-token-7d1c"
ADMIN_PATHS = ("/v1/lab-results/void", "/v1/models/")


@pytest.fixture
def client(column_a_registry: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(
        column_a_registry, tmp_path, tag_maps=[REPO / "deploy" / "tagmaps"], admin_token=TOKEN
    )
    with TestClient(create_app(settings)) as c:
        yield c


def _examples(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path with its query, body) of every example of every JSON request body in the
    schema, of each shape a body may take."""
    schemas = spec["components"]["schemas"]
    found = []
    for path, operations in spec["paths"].items():
        for op in operations.values():
            content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            schema = content.get("schema", {})
            for one in schema.get("anyOf", [schema]):
                ref = one.get("$ref", "").rsplit("/", 1)[-1]
                for example in schemas.get(ref, {}).get("examples", []):
                    found.append((path + QUERY.get(ref, ""), example))
    return found


def test_every_openapi_example_is_answered_by_the_default_model(client: TestClient) -> None:
    examples = _examples(client.get("/openapi.json").json())
    paths = {path for path, _ in examples}
    assert {"/v1/predict", "/v1/lab-results", "/v1/lab-results/void"} <= paths, paths
    assert "/v1/predict" + QUERY["PiStreamset"] in paths
    # the admin's examples last, with the token: the void example voids the lab example
    examples.sort(key=lambda example: example[0].startswith(ADMIN_PATHS))
    for path, body in examples:
        admin = path.startswith(ADMIN_PATHS)
        headers = {"authorization": f"Bearer {TOKEN}"} if admin else {}
        r = client.post(path, json=body, headers=headers)
        assert r.status_code == 200, (path, body, r.text)
        if "answer=piwebapi" in path:  # the answer is in the shape the schema states
            written = PiRecordedWrite.model_validate(r.json()).root
            assert len(written) == 4 and all(len(s.Items) == 1 for s in written)


def test_every_json_body_route_documents_the_unreadable_body_answer(client: TestClient) -> None:
    """A body that is not UTF-8 JSON is a 400 on every route that reads one; the schema says
    so (a schema fuzzer sending such a body found the void route's 400 undocumented)."""
    spec = client.get("/openapi.json").json()
    undocumented = [
        (method, path)
        for path, operations in spec["paths"].items()
        for method, op in operations.items()
        if "requestBody" in op and "400" not in op.get("responses", {})
    ]
    assert not undocumented
    r = client.post(
        "/v1/lab-results/void",
        content=b"a\x91OU",
        headers={"content-type": "application/json", "authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 400, r.text
