"""Build the template `chalice package --merge-template` merges: resources + overrides.

Usage: python infra/merge.py STAGE OUTPUT.json

Chalice merges one file, so this joins infra/resources.yaml (what Chalice cannot create)
and infra/chalice.yaml (changes to what it does create), and pins the Stage parameter to
the stage being packaged, so a template built for dev cannot be deployed as prod.

It refuses to build a template that names a partition literally (``arn:aws:``,
``arn:aws-cn:``, ...): such a stack cannot be deployed in AWS China or GovCloud. Every ARN
in the template is built with ``${AWS::Partition}`` (Fn::Sub) or taken from the resource
(Ref / Fn::GetAtt); the roles' policies of infra/chalice.yaml replace the ones Chalice
generates from .chalice/policy-*.json, whose static ARNs say ``arn:*:`` (any partition,
docs/deploy.md "Partitions").
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from chalice.package import TemplateDeepMerger, YAMLTemplateSerializer

INFRA = Path(__file__).resolve().parent
# A partition written out: "arn:aws:", "arn:aws-cn:", "arn:aws-us-gov:", ...
LITERAL_PARTITION = re.compile(r"arn:aws(-[a-z-]+)?:")


def load(name: str) -> dict[str, Any]:
    path = INFRA / name
    return YAMLTemplateSerializer().load_template(path.read_text(), str(path))


def literal_partitions(node: Any, path: str = "") -> list[str]:
    """Where a template (or policy) names a partition instead of ${AWS::Partition}."""
    if isinstance(node, dict):
        return [
            hit for key, value in node.items() for hit in literal_partitions(value, f"{path}/{key}")
        ]
    if isinstance(node, list):
        return [
            hit for i, value in enumerate(node) for hit in literal_partitions(value, f"{path}/{i}")
        ]
    if isinstance(node, str) and LITERAL_PARTITION.search(node):
        return [f"{path}: {node}"]
    return []


def merged(stage: str) -> dict[str, Any]:
    template = TemplateDeepMerger().merge(load("chalice.yaml"), load("resources.yaml"))
    allowed = template["Parameters"]["Stage"]["AllowedValues"]
    if stage not in allowed:
        raise SystemExit(f"merge.py: error: stage {stage!r} is not one of {', '.join(allowed)}")
    template["Parameters"]["Stage"]["AllowedValues"] = [stage]
    template["Parameters"]["Stage"]["Default"] = stage
    literal = literal_partitions(template)
    if literal:
        raise SystemExit(
            "merge.py: error: ARNs must use ${AWS::Partition}, not a literal partition:\n  "
            + "\n  ".join(literal)
        )
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
