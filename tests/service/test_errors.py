"""One error root: every failure of the project is a SoftSensorError, with one not-found."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import service
import training
from service.api.app import create_app
from service.contracts import errors, registry
from service.contracts.errors import SoftSensorError
from tests.service.conftest import Published, make_settings

OUTSIDE = {"service.api.http_protocol"}  # uvicorn's protocol classes, not errors


def _project_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (service, training):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if info.name in OUTSIDE or info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == info.name:
                    found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(found.values())


def test_every_project_error_has_the_one_root() -> None:
    """No error class of service/ or training/ stands outside SoftSensorError."""
    classes = _project_exceptions()
    assert len(classes) >= 20
    outside = [c.__qualname__ for c in classes if not issubclass(c, SoftSensorError)]
    assert outside == []


def test_there_is_one_model_not_found_error() -> None:
    """The registry's and the service's not-found are the same class, a 404 of both families."""
    assert registry.ModelNotFoundError is errors.ModelNotFoundError
    err = errors.ModelNotFoundError(None, "model 'x' is not served here")
    assert isinstance(err, errors.RegistryError) and isinstance(err, errors.ServiceError)
    assert (err.status, err.error, err.public(())) == (404, "model_not_found", str(err))


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (errors.VersionExistsError, 409),
        (errors.CorruptModelError, 422),
        (errors.InvalidNameError, 422),
        (errors.RegistryError, 500),
    ],
)
def test_registry_errors_carry_their_status(cls: type[errors.PathError], status: int) -> None:
    assert cls("/m/x", "why").status == status
    assert cls("/m/x", "why", status=418).status == 418


def test_a_missing_model_reads_the_same_on_every_path(published: Published, tmp_path: Path) -> None:
    """Unknown model on /v1, /v2 and the admin promote: 404 and `model_not_found` each time."""
    settings = make_settings(published.root, tmp_path, admin_token="t")
    auth = {"authorization": "Bearer t"}
    with TestClient(create_app(settings)) as c:
        answers = [
            c.post("/v1/predict", json={"model": "nope", "records": []}),
            c.get("/v2/models/nope"),
            c.post("/v1/models/tiny/promote", json={"version": "v404"}, headers=auth),
        ]
    for r in answers:
        assert r.status_code == 404, r.text
        assert r.json()["error"] == "model_not_found", r.text
    assert str(published.root) not in answers[2].text
