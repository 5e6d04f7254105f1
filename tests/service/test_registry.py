"""The on-disk registry: real files under tmp_path, real processes killed mid-write."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from service.contracts.card import (
    DataSummary,
    FeatureCard,
    ModelCard,
    PruningReport,
    ReferenceStats,
    RegressionMetrics,
    SignalCard,
    TargetCard,
    ValidRange,
)
from service.contracts.names import HISTORY_FILE
from service.contracts.registry import (
    CHAMPION_FILE,
    MAX_PREVIOUS,
    CorruptModelError,
    InvalidNameError,
    ModelNotFoundError,
    Registry,
    RegistryError,
    VersionExistsError,
    new_version_id,
)
from service.contracts.version_dir import rename_into_place

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def make_card(
    name: str, version: str, model: bytes, created: datetime = T0, sha256: str | None = None
) -> ModelCard:
    """The smallest valid card describing ``model`` (one signal, one feature)."""
    rng = ValidRange(low=0.0, high=1.0)
    ref = ReferenceStats(
        name="t1", bin_edges=[0.0, 0.5, 1.0], counts=[3, 4], mean=0.5, std=0.2, min=0.0, max=1.0
    )
    return ModelCard(
        name=name,
        version=version,
        created=created,
        onnx_sha256=sha256 or hashlib.sha256(model).hexdigest(),
        onnx_bytes=len(model),
        dense_onnx_bytes=len(model),
        signals=[SignalCard(name="t1", unit="degC", valid_range=rng)],
        features=[FeatureCard(name="t1", signal="t1", lag=0, unit="degC", valid_range=rng)],
        target=TargetCard(name="q", unit="mol%", valid_range=rng, analyzer_delay_samples=0),
        data=DataSummary(
            source="test",
            sha256="0" * 64,
            rows_read=10,
            rows_used=10,
            rows_train=6,
            rows_validation=2,
            rows_test=2,
        ),
        reference=[ref],
        prediction_reference=ref.model_copy(update={"name": "prediction"}),
        metrics={"test": RegressionMetrics(rmse=0.1, mae=0.1, r2=0.9, rows=2)},
        pruning=PruningReport(
            method="none",
            config={},
            pruning_rate=0.0,
            pruning_rate_per_layer=[0.0],
            neurons_removed=[0],
            inputs_removed=[],
            params_before=10,
            params_after=10,
        ),
        residual_quantiles={"0.05": -0.1, "0.95": 0.1},
        training={},
    )


def make_files(
    name: str, version: str, model: bytes | None = None, created: datetime = T0
) -> dict[str, bytes]:
    """A complete, consistent set of version files."""
    model = model if model is not None else f"onnx bytes of {name}/{version}".encode()
    card = make_card(name, version, model, created)
    return {
        "model.onnx": model,
        "card.json": card.model_dump_json(indent=2).encode(),
        "card.md": f"# {name} {version}\n".encode(),
    }


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


def store(reg: Registry, name: str, *versions: str) -> None:
    """Write versions with increasing ``created`` in the order given."""
    for i, version in enumerate(versions):
        reg.write_version(name, version, make_files(name, version, created=T0 + timedelta(i)))


def tamper(path: Path, data: bytes) -> None:
    """Overwrite a stored (read-only) file, as disk rot or a careless hand would."""
    path.chmod(0o644)
    path.write_bytes(data)


# --------------------------------------------------------------------------- round trip


def test_write_read_verify_round_trip(reg: Registry) -> None:
    files = make_files("debutanizer", "v1")
    path = reg.write_version("debutanizer", "v1", files)

    assert path == reg.root / "debutanizer" / "v1"
    assert {p.name for p in path.iterdir()} == {"model.onnx", "card.json", "card.md"}
    assert all((path / n).read_bytes() == data for n, data in files.items())
    expected = ModelCard.model_validate_json(files["card.json"])
    assert reg.read_card("debutanizer", "v1") == expected
    assert reg.verify("debutanizer", "v1") == expected
    assert reg.version_dir("debutanizer", "v1") == path
    assert reg.names() == ["debutanizer"]
    assert reg.versions("debutanizer") == ["v1"]
    assert [p.name for p in (reg.root / "debutanizer").iterdir()] == ["v1"]  # no temp left


def test_empty_or_missing_root_lists_nothing(reg: Registry) -> None:
    assert reg.names() == []
    assert reg.versions("debutanizer") == []
    assert reg.champion("debutanizer") is None


def test_versions_sort_by_card_created_then_id(reg: Registry) -> None:
    reg.write_version("col", "b", make_files("col", "b", created=T0))
    reg.write_version("col", "a", make_files("col", "a", created=T0 + timedelta(hours=1)))
    reg.write_version("col", "c", make_files("col", "c", created=T0))
    naive = datetime(2026, 11, 26, 11, 0)  # naive = UTC; must compare with aware ones
    reg.write_version("col", "z", make_files("col", "z", created=naive))
    assert reg.versions("col") == ["z", "b", "c", "a"]


def test_names_lists_only_models_with_a_complete_version(reg: Registry) -> None:
    store(reg, "col_b", "v1")
    store(reg, "col_a", "v1")
    (reg.root / "half").mkdir()
    (reg.root / "half" / ".v1.abc.tmp").mkdir()
    (reg.root / "README.md").write_text("not a model")
    assert reg.names() == ["col_a", "col_b"]


# --------------------------------------------------------------------------- immutability


def test_existing_version_is_never_overwritten(reg: Registry) -> None:
    store(reg, "col", "v1")
    path = reg.version_dir("col", "v1")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in path.iterdir()}

    other = make_files("col", "v1", model=b"a different model")
    with pytest.raises(VersionExistsError) as info:
        reg.write_version("col", "v1", other)

    assert info.value.status == 409
    assert str(path) in str(info.value)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in path.iterdir()} == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["v1"]  # no temp dir left behind


def test_stored_files_are_read_only(reg: Registry) -> None:
    store(reg, "col", "v1")
    for path in reg.version_dir("col", "v1").iterdir():
        assert path.stat().st_mode & 0o777 == 0o444


def test_rename_race_loser_gets_version_exists(reg: Registry) -> None:
    """A writer that passed the existence check before another one finished still loses."""
    store(reg, "col", "v1")
    tmp = reg.root / "col" / ".v1.race.tmp"
    tmp.mkdir()
    (tmp / "model.onnx").write_bytes(b"x")
    with pytest.raises(VersionExistsError):
        rename_into_place(tmp, reg.root / "col" / "v1")
    assert reg.verify("col", "v1").version == "v1"


def test_os_failure_while_writing_is_a_registry_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    reg = Registry(blocker / "models")
    with pytest.raises(RegistryError, match="cannot write version") as info:
        reg.write_version("col", "v1", make_files("col", "v1"))
    assert info.value.status == 500
    assert isinstance(info.value.__cause__, OSError)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "name", ["../x", "A B", "", ".hidden", "a/b", "Upper", "x" * 65, "ok\n", "/abs"]
)
def test_invalid_names_are_refused(reg: Registry, tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        reg.write_version(name, "v1", make_files("x", "v1"))
    assert info.value.status == 422
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidNameError):
        reg.versions(name)
    with pytest.raises(InvalidNameError):
        reg.promote(name, "v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created anywhere


@pytest.mark.parametrize("version", ["../x", "a b", ".v1", "v/1", "", "champion", "v" * 65])
def test_invalid_versions_are_refused(reg: Registry, version: str) -> None:
    with pytest.raises(InvalidNameError):
        reg.write_version("col", version, make_files("col", "v1"))
    with pytest.raises(InvalidNameError):
        reg.version_dir("col", version)
    assert not reg.root.exists()


@pytest.mark.parametrize("file_name", ["../evil", "sub/model.onnx", ".hidden", ""])
def test_invalid_file_names_are_refused(reg: Registry, file_name: str) -> None:
    files = make_files("col", "v1") | {file_name: b"x"}
    with pytest.raises(InvalidNameError):
        reg.write_version("col", "v1", files)
    assert not reg.root.exists()


def test_inconsistent_files_are_refused_before_writing(reg: Registry) -> None:
    good = make_files("col", "v1")
    cases = {
        "missing model": {"card.json": good["card.json"]},
        "missing card": {"model.onnx": good["model.onnx"]},
        "wrong sha256": good | {"model.onnx": b"other bytes"},
        "wrong version": good | {"card.json": make_files("col", "v2")["card.json"]},
        "wrong name": good | {"card.json": make_files("other", "v1")["card.json"]},
        "invalid card": good | {"card.json": b'{"name": "col"}'},
    }
    for case, files in cases.items():
        with pytest.raises(CorruptModelError) as info:
            reg.write_version("col", "v1", files)
        assert info.value.status == 422, case
    assert not reg.root.exists()


# --------------------------------------------------------------------------- champion


def test_promote_and_rollback_sequence(reg: Registry) -> None:
    store(reg, "col", "v1", "v2", "v3")
    assert reg.champion("col") is None

    reg.promote("col", "v1")
    reg.promote("col", "v2")
    pointer = reg.promote("col", "v3")
    assert reg.champion("col") == "v3"
    assert pointer.previous == ("v2", "v1")
    on_disk = json.loads((reg.root / "col" / CHAMPION_FILE).read_text())
    assert on_disk["version"] == "v3"
    assert on_disk["previous"] == ["v2", "v1"]
    assert datetime.fromisoformat(on_disk["updated"]).tzinfo is not None

    assert reg.promote("col", "v3") == pointer  # promoting the champion changes nothing

    assert reg.rollback("col") == "v2"
    assert reg.champion("col") == "v2"
    assert reg.rollback("col") == "v1"
    assert reg.champion("col") == "v1"
    with pytest.raises(RegistryError) as info:
        reg.rollback("col")
    assert info.value.status == 409
    assert reg.champion("col") == "v1"  # a refused rollback leaves the champion alone


def test_promote_again_moves_version_to_top_once(reg: Registry) -> None:
    store(reg, "col", "v1", "v2")
    reg.promote("col", "v1")
    reg.promote("col", "v2")
    pointer = reg.promote("col", "v1")
    assert (pointer.version, pointer.previous) == ("v1", ("v2",))


def test_history_is_bounded(reg: Registry) -> None:
    versions = [f"v{i:02d}" for i in range(MAX_PREVIOUS + 5)]
    store(reg, "col", *versions)
    for version in versions:
        pointer = reg.promote("col", version)
    assert len(pointer.previous) == MAX_PREVIOUS
    assert pointer.previous[0] == versions[-2]


def test_rollback_skips_deleted_and_corrupt_versions(reg: Registry) -> None:
    store(reg, "col", "v1", "v2", "v3", "v4")
    for version in ("v1", "v2", "v3", "v4"):
        reg.promote("col", version)
    shutil.rmtree(reg.root / "col" / "v3")
    tamper(reg.root / "col" / "v2" / "model.onnx", b"rotten")
    assert reg.rollback("col") == "v1"
    assert reg.pointer("col") is not None
    with pytest.raises(RegistryError, match="no previous version"):
        reg.rollback("col")


def test_rollback_without_champion(reg: Registry) -> None:
    store(reg, "col", "v1")
    with pytest.raises(ModelNotFoundError) as info:
        reg.rollback("col")
    assert info.value.status == 404
    with pytest.raises(ModelNotFoundError):
        reg.rollback("unknown")


def test_promote_missing_or_incomplete_version_is_refused(reg: Registry) -> None:
    store(reg, "col", "v1")
    reg.promote("col", "v1")

    with pytest.raises(ModelNotFoundError) as missing:
        reg.promote("col", "v9")
    assert missing.value.status == 404
    with pytest.raises(ModelNotFoundError):
        reg.promote("nothing", "v1")

    half = reg.root / "col" / "v2"
    half.mkdir()
    (half / "model.onnx").write_bytes(b"x")  # no card.json: as if copied by hand, partly
    with pytest.raises(CorruptModelError, match=r"card\.json is missing"):
        reg.promote("col", "v2")
    assert reg.versions("col") == ["v1"]
    assert reg.champion("col") == "v1"


def test_promote_corrupt_version_is_refused(reg: Registry) -> None:
    store(reg, "col", "v1")
    tamper(reg.root / "col" / "v1" / "model.onnx", b"rotten")
    with pytest.raises(CorruptModelError):
        reg.promote("col", "v1")
    assert reg.champion("col") is None


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"[]",
        b'{"previous": []}',
        b'{"version": 3}',
        b'{"version": "../x"}',
        b'{"version": "v1", "previous": "v0"}',
        b'{"version": "v1", "previous": ["ok", ".bad"]}',
        b'{"version": "v1", "updated": "yesterday"}',
        b"\xff\xfe",
    ],
)
def test_corrupt_champion_pointer_is_a_clear_error(reg: Registry, content: bytes) -> None:
    store(reg, "col", "v1")
    pointer = reg.root / "col" / CHAMPION_FILE
    pointer.write_bytes(content)
    for action in (reg.champion, reg.rollback):
        with pytest.raises(RegistryError) as info:
            action("col")
        assert str(pointer) in str(info.value)
        assert info.value.status == 500
        assert not isinstance(info.value, CorruptModelError | ModelNotFoundError)
    with pytest.raises(RegistryError, match="champion pointer"):
        reg.promote("col", "v1")
    assert pointer.read_bytes() == content  # not silently replaced


def test_bare_version_pointer_is_read(reg: Registry) -> None:
    """models/README.md calls the pointer a text file holding the version; accept that."""
    store(reg, "col", "v1", "v2")
    (reg.root / "col" / CHAMPION_FILE).write_text("v1\n")
    assert reg.champion("col") == "v1"
    assert reg.promote("col", "v2").previous == ("v1",)


# --------------------------------------------------------------------------- verification


def test_wrong_sha256_is_corrupt(reg: Registry) -> None:
    store(reg, "col", "v1")
    model = reg.root / "col" / "v1" / "model.onnx"
    tamper(model, b"onnx bytes of col/v1 but flipped")
    reg.read_card("col", "v1")  # the card itself is fine
    with pytest.raises(CorruptModelError, match="sha256") as info:
        reg.verify("col", "v1")
    assert info.value.status == 422
    assert str(reg.root / "col" / "v1") in str(info.value)


def test_invalid_card_json_is_corrupt_but_still_listed(reg: Registry) -> None:
    store(reg, "col", "v1", "v2")
    card = reg.root / "col" / "v1" / "card.json"
    tamper(card, b'{"name": "col", "version": "v1"}')
    for action in (reg.read_card, reg.verify):
        with pytest.raises(CorruptModelError, match="not a valid model card") as info:
            action("col", "v1")
        assert str(card) in str(info.value)
    tamper(card, b"\x00not json")
    with pytest.raises(CorruptModelError):
        reg.read_card("col", "v1")
    os.utime(reg.root / "col" / "v1", (0, 0))  # falls back to mtime: sorts first
    assert reg.versions("col") == ["v1", "v2"]


def test_card_of_another_version_is_corrupt(reg: Registry) -> None:
    store(reg, "col", "v1")
    shutil.copytree(reg.root / "col" / "v1", reg.root / "col" / "v2")  # copied by hand
    with pytest.raises(CorruptModelError, match="card names version 'v1'"):
        reg.verify("col", "v2")


def test_version_dir_of_missing_version(reg: Registry) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        reg.version_dir("col", "v1")
    assert str(reg.root / "col" / "v1") in str(info.value)
    with pytest.raises(ModelNotFoundError):
        reg.read_card("col", "v1")


# --------------------------------------------------------------------------- leftovers


def test_stale_temp_dirs_are_ignored_and_cleaned(reg: Registry) -> None:
    store(reg, "col", "v1")
    name_dir = reg.root / "col"
    old = name_dir / ".v2.k3j4.tmp"
    old.mkdir()
    (old / "model.onnx").write_bytes(b"half")
    (old / "card.json").write_bytes(make_files("col", "v2")["card.json"])  # even if complete
    fresh = name_dir / ".v3.x9.tmp"
    fresh.mkdir()
    pointer_tmp = name_dir / ".champion.abc.tmp"  # left by write_atomic
    pointer_tmp.write_text("{}")
    hour_ago = time.time() - 3600
    for path in (old, pointer_tmp):
        os.utime(path, (hour_ago, hour_ago))
    reg.promote("col", "v1")  # creates the lock file, which must survive

    assert reg.versions("col") == ["v1"]
    assert reg.names() == ["col"]
    with pytest.raises(InvalidNameError):
        reg.version_dir("col", old.name)

    reg.write_version("other", "v1", make_files("other", "v1"))  # cleans only its own name
    assert old.exists() and pointer_tmp.exists()
    reg.write_version("col", "v2", make_files("col", "v2"))  # a write cleans up after crashes
    assert not old.exists() and not pointer_tmp.exists() and fresh.exists()  # may be in use
    assert sorted(p.name for p in name_dir.iterdir()) == sorted(
        [".lock", CHAMPION_FILE, HISTORY_FILE, "v1", "v2", fresh.name]
    )
    assert reg.champion("col") == "v1"


# --------------------------------------------------------------------------- ids and errors


def test_new_version_id() -> None:
    assert new_version_id(T0) == "20261126T120000Z"
    assert new_version_id(T0, "3f2a9c1") == "20261126T120000Z-3f2a9c1"
    assert new_version_id(datetime(2026, 11, 26, 12, 0)) == "20261126T120000Z"  # naive = UTC
    cet = timezone(timedelta(hours=1))
    assert new_version_id(datetime(2026, 11, 26, 13, 0, 59, tzinfo=cet)) == "20261126T120059Z"
    now = new_version_id()
    assert len(now) == 16 and now.endswith("Z")
    assert new_version_id(T0) < new_version_id(T0 + timedelta(seconds=1), "0000000")
    for bad in ("a b", "../x", "x" * 60):
        with pytest.raises(InvalidNameError):
            new_version_id(T0, bad)


def test_error_family_statuses() -> None:
    assert RegistryError(None, "x").status == 500
    assert RegistryError(None, "x", status=409).status == 409
    assert ModelNotFoundError("p", "x").status == 404
    assert VersionExistsError("p", "x").status == 409
    assert CorruptModelError("p", "x").status == 422
    err = CorruptModelError(Path("/m/col/v1"), "bad sha256")
    assert str(err) == "/m/col/v1: bad sha256"
    assert (err.path, err.reason) == ("/m/col/v1", "bad sha256")
    assert all(
        issubclass(cls, RegistryError)
        for cls in (ModelNotFoundError, VersionExistsError, CorruptModelError, InvalidNameError)
    )


# --------------------------------------------------------------------------- crash safety

CRASH_CHILD = """
import os, sys
from pathlib import Path
from service.contracts.registry import Registry
from tests.service.test_registry import make_files

reg = Registry(Path(sys.argv[1]))
mode, start = sys.argv[2], int(sys.argv[3])
block = os.urandom(1 << 20)
if mode == "write":  # mostly writing big versions: kills land inside write_version
    for i in range(start, start + 100_000):
        version = f"v{i:07d}"
        model = block * 8 + i.to_bytes(8, "little")  # 8 MiB, different for every version
        reg.write_version("crash", version, make_files("crash", version, model))
        reg.promote("crash", version)
        print(version, flush=True)
else:  # only switching the pointer: kills land inside its replacement
    a, b = f"a{start:07d}", f"b{start:07d}"
    for version in (a, b):
        reg.write_version("crash", version, make_files("crash", version))
    reg.promote("crash", a)
    print(a, flush=True)
    while True:
        reg.promote("crash", b)
        reg.rollback("crash")
"""


def assert_registry_consistent(reg: Registry) -> list[str]:
    """Every listed version verifies; the champion parses and names a verified version."""
    versions = reg.versions("crash")
    for version in versions:
        reg.verify("crash", version)
    pointer = reg.pointer("crash")
    if pointer is not None:
        assert pointer.version in versions
        assert set(pointer.previous) <= set(versions)
    return versions


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["write", "promote"])
def test_sigkill_mid_write_leaves_only_complete_versions(tmp_path: Path, mode: str) -> None:
    """SIGKILL at random moments of write/promote; no listed version may be half written.

    (A kill tests the process dying, not the power failing: the page cache survives a
    kill. The fsyncs are what cover the power; this covers the ordering of the steps.)
    """
    reg = Registry(tmp_path / "models")
    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    seen: list[str] = []
    for attempt in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CRASH_CHILD, str(reg.root), mode, str(attempt * 100_000)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        first = child.stdout.readline()  # imports done and one version stored
        if not first:
            child.wait()
            pytest.fail(f"child died before writing: {child.stderr.read() if child.stderr else ''}")
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.communicate()
        assert child.returncode == -signal.SIGKILL

        versions = assert_registry_consistent(reg)
        assert first.strip() in versions
        assert set(seen) <= set(versions)  # nothing stored earlier was lost
        seen = versions

    assert assert_registry_consistent(reg) == seen  # whatever temp entries the kills left
