"""The oldest versions the course declares, as pip constraints, for the lower-bounds test run.

Every lower bound in pyproject.toml is a promise: "this version works". `make test-oldest` keeps
that promise honest by installing those versions, on the oldest Python the course supports, and
running the test suite there. A bound is pinned as its release series (`numpy>=1.26` becomes
`numpy==1.26.*`): the series' bug-fix releases are what a user gets who asks for it.

    python tools/oldest_constraints.py              # print `name==lowest.*` lines
    python tools/oldest_constraints.py --python     # print the oldest supported Python (e.g. 3.10)
    python tools/oldest_constraints.py -o FILE      # write the constraints to FILE

Only the course's own dependencies are pinned: the core list and the TensorFlow extras. The
development tools (pytest, ruff ...) are not promises to users and install as usual.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# Extras whose packages are promises to users (TensorFlow builds), besides the core dependencies.
PINNED_EXTRAS = ("cpu", "gpu")
_LOWER = re.compile(r">=\s*([0-9][0-9A-Za-z.]*)")


def lowest_version(requirement: str) -> tuple[str, str] | None:
    """``(distribution, version)`` of a requirement's ``>=`` bound, or None without one.

    Example:
        >>> lowest_version("numpy>=1.26,<3")
        ('numpy', '1.26')
        >>> lowest_version("tensorflow[and-cuda]>=2.16,<2.22")
        ('tensorflow', '2.16')
    """
    spec, _, _marker = requirement.partition(";")
    name = re.split(r"[<>=!~\[ ]", spec.strip(), maxsplit=1)[0].lower()
    found = _LOWER.search(spec)
    return (name, found.group(1)) if found else None


def oldest_constraints(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """``name==version.*`` for each lower bound of the core dependencies and TensorFlow extras."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in PINNED_EXTRAS:
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    pins: dict[str, str] = {}
    for requirement in requirements:
        found = lowest_version(requirement)
        if found is None:
            continue
        name, version = found
        if pins.setdefault(name, version) != version:
            raise SystemExit(
                f"pyproject.toml gives {name} two lower bounds ({pins[name]} and {version}); "
                "make them the same."
            )
    return [f"{name}=={version}.*" for name, version in sorted(pins.items())]


def oldest_python(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The oldest Python that pyproject.toml's ``requires-python`` admits, as ``3.X``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    found = _LOWER.search(project["requires-python"])
    if found is None:
        raise SystemExit("pyproject.toml's requires-python has no lower bound (>=3.X)")
    return ".".join(found.group(1).split(".")[:2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="store_true", help="print the oldest supported Python")
    parser.add_argument("-o", "--out", type=Path, help="write the constraints to this file")
    args = parser.parse_args(argv)
    if args.python:
        print(oldest_python())
        return 0
    text = "\n".join(oldest_constraints()) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
