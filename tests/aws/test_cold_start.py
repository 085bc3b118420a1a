"""The API Lambda's cold start imports none of the attack drivers nor local mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from chalicelib.local.fake_aws import FAKE_AWS
from tests.aws.test_stage_wiring import stage_environment

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("libcloud", "paramiko", "apscheduler", "moto")

AS_DEPLOYED = """
import json, sys
from app import app
after_import = sorted(sys.modules)
from chalicelib.api.context import engine_of
engine = engine_of(app)  # what the first request does: settings, adapters, plugins
print(json.dumps({
    "after_import": after_import,
    "after_engine": sorted(sys.modules),
    "attacks": [attack["ref"] for attack in engine.attacks.catalogue()],
    "scheduler": type(engine.scheduler).__name__,
}))
"""


def heavy_modules(modules: list[str]) -> list[str]:
    return [name for name in modules if name.split(".")[0] in HEAVY]


def test_the_api_lambda_imports_no_driver_and_no_local_mode():
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CME_", "PYTEST", "COV_"))
    }
    env.update(FAKE_AWS)
    env.update(stage_environment("dev"))
    result = subprocess.run(
        [sys.executable, "-c", AS_DEPLOYED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["scheduler"] == "EventBridgeScheduler"
    assert "api_request:ApiRequest" in report["attacks"]
    assert heavy_modules(report["after_import"]) == []
    assert heavy_modules(report["after_engine"]) == []


def test_the_check_sees_a_heavy_module_when_one_is_imported():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, apscheduler; print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert heavy_modules(json.loads(result.stdout)) == ["apscheduler"]
