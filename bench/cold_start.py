"""Measure what the deployed API Lambda pays at cold start: zip size and import time.

Usage: .venv/bin/python bench/cold_start.py [--runs N] [--zip out/dev/deployment.zip]

Each run is a fresh interpreter with the dev stage's environment (no local mode):
``import app`` (what Lambda's init phase does), then building the engine (what the first
request does: settings, DynamoDB and EventBridge adapters, plugin loading). No AWS call
is made. Build the zip first with ``make package``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_REGION": "eu-west-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def stage_environment(stage: str) -> dict[str, str]:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return {
        **config["environment_variables"],
        **config["stages"][stage].get("environment_variables", {}),
    }


def measure(runs: int) -> list[dict[str, float]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CME_")}
    env.update(FAKE_AWS)
    env.update(stage_environment("dev"))
    samples = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-c", PROBE],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        samples.append(json.loads(result.stdout))
    return samples


def describe(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.0f} ms "
        f"(min {min(values):.0f}, max {max(values):.0f}, n={len(values)})"
    )


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--runs", type=int, default=10)
    options.add_argument("--zip", type=Path, default=ROOT / "out" / "dev" / "deployment.zip")
    args = options.parse_args()

    if args.zip.is_file():
        with zipfile.ZipFile(args.zip) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
            files = len(archive.infolist())
        print(
            f"deployment.zip: {args.zip.stat().st_size / 1e6:.1f} MB zipped, "
            f"{unpacked / 1e6:.1f} MB unzipped, {files} files "
            "(Lambda limits: 50 MB zipped upload, 250 MB unzipped)"
        )
    else:
        print(f"{args.zip} not found; run `make package` first", file=sys.stderr)
    samples = measure(args.runs)
    print("import app:      " + describe([s["import_ms"] for s in samples]))
    print("engine build:    " + describe([s["engine_ms"] for s in samples]))
    total = [s["import_ms"] + s["engine_ms"] for s in samples]
    print("import + engine: " + describe(total))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
