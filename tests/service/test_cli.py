"""The ``softsensor`` command line lives in ``service.cli``: serving commands without torch,
training commands only where the training extra is installed, no benchmark inside."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from service.cli.main import build_parser
from tests.conftest import REPO

NO_TRAINING = "import sys; sys.modules['torch'] = None; sys.modules['pandas'] = None; "


def _run(code: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)


def test_building_the_cli_does_not_import_torch() -> None:
    """Every command is registered without importing torch, pandas or bench."""
    out = _run(
        "import sys, service.cli.main as c; c.build_parser(); "
        "print([m for m in ('torch', 'pandas', 'bench') if m in sys.modules])"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_serving_commands_work_without_the_training_extra(tmp_path: Path) -> None:
    """Where torch and pandas are missing (the serving image) `models list` still runs."""
    argv = ["models", "list", "--registry", str(tmp_path)]
    out = _run(NO_TRAINING + f"import service.cli.main as c; sys.exit(c.main({argv!r}))")
    assert out.returncode == 0, out.stderr


def test_training_commands_say_what_to_install_without_the_extra() -> None:
    """`softsensor train ...` without the extra: exit 2 and the install command, no traceback."""
    argv = ["train", "--spec", "s.yaml", "--data", "d.csv", "--out", "o"]
    out = _run(NO_TRAINING + f"import service.cli.main as c; sys.exit(c.main({argv!r}))")
    assert out.returncode == 2
    assert "pip install 'softsensor[train]'" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_command_line_has_no_benchmark_commands() -> None:
    """Benchmarks run from the repository (`python -m bench.paper`), not from the product."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = {"simulate", "spec", "train", "retrain", "models", "serve", "connect"}
    assert set(sub.choices) == commands  # type: ignore[arg-type]


def test_bench_is_not_in_the_installed_package() -> None:
    """The wheel holds service and training: the packages pyproject's find rule selects."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    find = config["tool"]["setuptools"]["packages"]["find"]
    tops = [d.name for d in REPO.iterdir() if (d / "__init__.py").is_file()]
    packages = {name for name in tops if any(fnmatch(name, p) for p in find["include"])}
    assert packages == {"service", "training"}
    assert (REPO / "service" / "cli" / "__init__.py").is_file()
    assert config["project"]["scripts"]["softsensor"] == "service.cli.main:main"
