"""Write chalicelib/api/openapi.json (what /api/1/openapi.json serves) from docs/openapi.yaml.

docs/openapi.yaml is the one source of truth; the API Lambda ships only the JSON copy, so
it needs no YAML parser. ``--check`` writes nothing and exits 1 when the copy is stale
(tests/api/test_openapi.py makes the same check).

    .venv/bin/python scripts/openapi_json.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "docs" / "openapi.yaml"
TARGET = ROOT / "chalicelib" / "api" / "openapi.json"


def load_source(path: Path = SOURCE) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a mapping")
    return document


def render(document: dict[str, Any]) -> str:
    """The JSON text of ``document``: stable, so that a diff shows what changed."""
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is stale")
    options = parser.parse_args(argv)
    text = render(load_source())
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else None
    if options.check:
        if current != text:
            print(
                f"{TARGET.relative_to(ROOT)} is stale: run scripts/openapi_json.py", file=sys.stderr
            )
            return 1
        return 0
    if current != text:
        TARGET.write_text(text, encoding="utf-8")
        print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
