"""A longer schemathesis run of tests/service/test_fuzz.py, with its case count recorded.

The test suite runs the fuzz test with 25 examples per operation and mode; this runs the
same test with more (``--examples``) and writes the report (cases run, statuses seen per
operation) to ``bench/results/fuzz/results.json``.

    python -m bench.fuzz --examples 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.protocol import REPO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="per operation and mode")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fuzz")
    args = parser.parse_args()
    report = args.out / "results.json"
    env = {
        **os.environ,
        "SOFTSENSOR_FUZZ_EXAMPLES": str(args.examples),
        "SOFTSENSOR_FUZZ_REPORT": str(report),
    }
    test = "tests/service/test_fuzz.py"
    done = subprocess.run([sys.executable, "-m", "pytest", test, "-q", "-s"], cwd=REPO, env=env)
    if report.is_file():
        result = json.loads(report.read_text(encoding="utf-8"))
        result["command"] = f"python -m bench.fuzz --examples {args.examples}"
        result["passed"] = done.returncode == 0
        report.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"{result['cases']} cases, passed: {result['passed']}; report in {report}")
    raise SystemExit(done.returncode)


if __name__ == "__main__":
    main()
