"""`softsensor bench paper` takes the same options as `python -m bench.paper`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.paper import build_parser
from training.cli import build_parser as build_cli


def test_cli_and_module_parse_the_same_options(tmp_path: Path) -> None:
    """Both entry points accept --quick, --out, --workers, --seeds and --only."""
    argv = ["--quick", "--out", str(tmp_path), "--workers", "1", "--seeds", "2", "--only", "mnist"]
    module = build_parser().parse_args(argv)
    cli = build_cli().parse_args(["bench", "paper", *argv])
    for name in ("quick", "out", "workers", "seeds", "only", "mnist_dir", "plots"):
        assert getattr(cli, name) == getattr(module, name)
    assert cli.handler.__name__ == "_run_bench_paper"


def test_building_the_cli_does_not_import_torch() -> None:
    """The bench subcommand is registered without importing torch (the serving image)."""
    code = "import sys, training.cli; training.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_works_where_bench_is_not_installed(tmp_path: Path) -> None:
    """Without bench/ (the serving image) the CLI still builds; `bench paper` says why not."""
    code = (
        "import sys; sys.modules['bench'] = None; import training.cli as c; "
        "c.build_parser(); sys.exit(c.main(['bench', 'paper']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert "bench/) are not installed here" in out.stderr
