"""Measure what the deployed API Lambda pays at cold start: zip size and import time.

Usage: .venv/bin/python bench/cold_start.py [--runs N] [--zip out/dev/deployment.zip] [--tree]

Each run is a fresh interpreter with the dev stage's environment (no local mode):
``import app`` (what Lambda's init phase does), then building the engine (what the first
request does: settings, DynamoDB and EventBridge adapters, plugin loading). No AWS call
is made. Build the zip first with ``make package``.

By default the code runs from the unzipped package, as in Lambda: ``python -S`` with only
the package and this virtualenv's boto3 and s3transfer (standing in for the Lambda
runtime's) on the path. ``--tree`` runs the working tree with the virtualenv instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a script in bench/: the repository's modules by their names

from chalicelib.local.fake_aws import FAKE_AWS  # noqa: E402
from infra.slim_package import Measure, runtime_stand_in, unpack  # noqa: E402

PROBE = """
import json, time
start = time.perf_counter()
from app import app
imported = time.perf_counter()
from chalicelib.api.context import engine_of
engine_of(app)
built = time.perf_counter()
print(json.dumps({"import_ms": (imported - start) * 1000, "engine_ms": (built - imported) * 1000}))
"""


def stage_environment(stage: str) -> dict[str, str]:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return {
        **config["environment_variables"],
        **config["stages"][stage].get("environment_variables", {}),
    }


def measure(runs: int, package: Path | None) -> list[dict[str, float]]:
    """``runs`` samples from the working tree, or from the unzipped ``package``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CME_", "PYTHONPATH"))
    }
    env.update(FAKE_AWS)
    env.update(stage_environment("dev"))
    command, cwd = [sys.executable, "-c", PROBE], ROOT
    with tempfile.TemporaryDirectory(prefix="cold-start-") as scratch:
        if package is not None:
            task = unpack(package, Path(scratch) / "task")
            stand_in = runtime_stand_in(Path(scratch) / "runtime")
            env["PYTHONPATH"] = os.pathsep.join([str(task), str(stand_in)])
            env["PYTHONDONTWRITEBYTECODE"] = "1"  # Lambda's /var/task is read-only
            command, cwd = [sys.executable, "-S", "-c", PROBE], task
        return [sample(command, cwd, env) for _ in range(runs)]


def sample(command: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(result.stdout))


def describe(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.0f} ms "
        f"(min {min(values):.0f}, max {max(values):.0f}, n={len(values)})"
    )


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--runs", type=int, default=10)
    options.add_argument("--zip", type=Path, default=ROOT / "out" / "dev" / "deployment.zip")
    options.add_argument(
        "--tree", action="store_true", help="run the working tree, not the unzipped package"
    )
    args = options.parse_args()

    if not zipfile.is_zipfile(args.zip):
        if not args.tree:
            print(f"{args.zip} not found; run `make package` first", file=sys.stderr)
            return 2
    else:
        print(
            f"deployment.zip: {Measure.of(args.zip)} "
            "(Lambda limits: 50 MB zipped upload, 250 MB unzipped)"
        )
    print("running from: " + ("the working tree" if args.tree else f"unzipped {args.zip}"))
    samples = measure(args.runs, None if args.tree else args.zip)
    print("import app:      " + describe([s["import_ms"] for s in samples]))
    print("engine build:    " + describe([s["engine_ms"] for s in samples]))
    total = [s["import_ms"] + s["engine_ms"] for s in samples]
    print("import + engine: " + describe(total))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
