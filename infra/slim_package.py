"""Rewrite a `chalice package` deployment.zip without what the Lambda functions never load.

Usage: python infra/slim_package.py DEPLOYMENT.zip

`make package` runs this after `chalice package`. It removes, and only removes:

- third-party test suites and benchmarks (``*/test/*``, ``*/tests/*``, ``*/benchmarks/*``:
  Libcloud ships ~2,400 files of its own tests), byte code (``__pycache__``, ``*.pyc``)
  and type stubs (``*.pyi``);
- botocore's API models of the AWS services this code never calls (botocore ships ~400
  services' models, ~16 MB zipped). botocore itself stays pinned in the zip: the Lambda
  runtime's copy is whatever AWS last put there, and our EventBridge Scheduler calls
  need a botocore that knows their parameters (docs/benchmarks.md gives the numbers).

Libcloud's drivers and ``libcloud/data/pricing.json`` stay: ``terminate_node`` and friends
accept any Libcloud compute provider, and the GCE driver reads the pricing file in
``list_nodes``. Licences and dist-info metadata stay.

A service added to the code must be added to ``BOTOCORE_SERVICES``;
``tests/aws/test_package.py`` fails until it is.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# Every service the deployed code creates a boto3 client for (PynamoDB: dynamodb).
BOTOCORE_SERVICES = frozenset(
    {"dynamodb", "scheduler", "sts", "ec2", "ssm", "secretsmanager", "cloudwatch", "sns"}
)

# What the Lambda Python runtime provides and the zip does not ship (Chalice leaves boto3
# out; nothing in requirements.txt pulls it in). A check of the zip outside Lambda must
# take these from the virtualenv, standing in for the runtime's copies.
RUNTIME_PROVIDED = ("boto3", "s3transfer")

TEST_SUITE_DIRECTORIES = frozenset({"test", "tests", "benchmarks"})


def is_shipped(name: str) -> bool:
    """Whether the zip entry ``name`` stays in the slim package."""
    path = PurePosixPath(name)
    if TEST_SUITE_DIRECTORIES.intersection(path.parts[:-1]):
        return False
    if "__pycache__" in path.parts or path.suffix in {".pyc", ".pyi"}:
        return False
    parts = path.parts
    if parts[:2] == ("botocore", "data") and len(parts) > 3:
        # botocore/data/<service>/<api version>/...; the files directly under
        # botocore/data/ (endpoints, partitions, retry rules) are shared by every service.
        return parts[2] in BOTOCORE_SERVICES
    return True


@dataclass(frozen=True)
class Measure:
    """Size of one deployment.zip."""

    zipped_bytes: int
    unzipped_bytes: int
    files: int

    @classmethod
    def of(cls, path: Path) -> Measure:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
        return cls(path.stat().st_size, sum(info.file_size for info in infos), len(infos))

    def __str__(self) -> str:
        return (
            f"{self.zipped_bytes / 1e6:.1f} MB zipped, "
            f"{self.unzipped_bytes / 1e6:.1f} MB unzipped, {self.files:,} files"
        )


def slim(path: Path) -> tuple[Measure, Measure]:
    """Rewrite the zip at ``path`` in place with only the shipped entries; sizes before/after.

    Entries keep their metadata (time stamps, Unix permissions, compression), so the
    result is as reproducible as Chalice's own zip.
    """
    before = Measure.of(path)
    handle, temporary = tempfile.mkstemp(suffix=".zip", dir=path.parent)
    os.close(handle)
    try:
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(temporary, "w") as target:
            for info in source.infolist():
                if is_shipped(info.filename):
                    target.writestr(info, source.read(info), compress_type=info.compress_type)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return before, Measure.of(path)


def runtime_stand_in(directory: Path) -> Path:
    """Fill ``directory`` with links to this interpreter's copies of ``RUNTIME_PROVIDED``.

    Put it after the unzipped package on ``PYTHONPATH`` (and run Python with ``-S``, so
    nothing else of the virtualenv is visible) to import the package as Lambda would.
    """
    import importlib.util

    directory.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"slim_package.py: error: {name} is not installed here")
        link = directory / name
        if not link.exists():
            link.symlink_to(next(iter(spec.submodule_search_locations)), target_is_directory=True)
    return directory


def unpack(package: Path, directory: Path) -> Path:
    """Extract ``package`` into ``directory`` (replacing what is there) and return it."""
    shutil.rmtree(directory, ignore_errors=True)
    with zipfile.ZipFile(package) as archive:
        archive.extractall(directory)
    return directory


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    path = Path(argv[0])
    before, after = slim(path)
    print(f"{path}: {before} -> {after}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
