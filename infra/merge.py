"""Build the template `chalice package --merge-template` merges: resources + overrides.

Usage: python infra/merge.py STAGE OUTPUT.json

Chalice merges one file, so this joins infra/resources.yaml (what Chalice cannot create)
and infra/chalice.yaml (changes to what it does create), and pins the Stage parameter to
the stage being packaged, so a template built for dev cannot be deployed as prod.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from chalice.package import TemplateDeepMerger, YAMLTemplateSerializer

INFRA = Path(__file__).resolve().parent


def load(name: str) -> dict[str, Any]:
    path = INFRA / name
    return YAMLTemplateSerializer().load_template(path.read_text(), str(path))


def merged(stage: str) -> dict[str, Any]:
    template = TemplateDeepMerger().merge(load("chalice.yaml"), load("resources.yaml"))
    allowed = template["Parameters"]["Stage"]["AllowedValues"]
    if stage not in allowed:
        raise SystemExit(f"merge.py: error: stage {stage!r} is not one of {', '.join(allowed)}")
    template["Parameters"]["Stage"]["AllowedValues"] = [stage]
    template["Parameters"]["Stage"]["Default"] = stage
    return template


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    stage, output = argv
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(merged(stage), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
