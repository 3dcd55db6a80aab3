"""environment.yml (conda) and pyproject.toml (pip) list the same packages and version ranges."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# PyPI names whose conda-forge package has another name: TensorFlow's CPU and CUDA builds are one
# conda-forge package, which picks the build from the machine.
PYPI_TO_CONDA = {"tensorflow-cpu": "tensorflow"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_requirements() -> dict[str, SpecifierSet]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    out: dict[str, SpecifierSet] = {"python": SpecifierSet(project["requires-python"])}
    for line in reqs:
        req = Requirement(line)
        if req.name == "tomli":  # a Python 3.10 backport of the standard library's tomllib
            continue
        name = PYPI_TO_CONDA.get(_normalise(req.name), _normalise(req.name))
        if name in out and out[name] != req.specifier:
            pytest.fail(
                f"pyproject.toml lists {name} twice with different ranges: "
                f"{out[name]} and {req.specifier}"
            )
        out[name] = req.specifier
    return out


def conda_requirements() -> dict[str, SpecifierSet]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"], "environment.yml must use conda-forge only"
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict) or dep == "pip":
            continue
        req = Requirement(dep)
        out[_normalise(req.name)] = req.specifier
    return out


def test_same_packages_in_pyproject_and_environment_yml():
    pip, conda = pyproject_requirements(), conda_requirements()
    assert sorted(pip) == sorted(conda), (
        f"only in pyproject.toml: {sorted(set(pip) - set(conda))}; "
        f"only in environment.yml: {sorted(set(conda) - set(pip))}"
    )


def test_same_version_ranges_in_pyproject_and_environment_yml():
    pip, conda = pyproject_requirements(), conda_requirements()
    differ = {name: (str(pip[name]), str(conda[name])) for name in pip if pip[name] != conda[name]}
    assert not differ, f"version ranges differ (pyproject, environment.yml): {differ}"


def test_every_course_package_in_environment_yml_says_which_notebooks_need_it():
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("dependencies:") + 1
    course = []
    for line in lines[start:]:
        if line.strip().startswith("# development"):
            break
        if line.strip().startswith("- ") and not line.strip().startswith("- python"):
            course.append(line)
    assert course, "no course packages found in environment.yml"
    uncommented = [line.strip() for line in course if "#" not in line]
    assert not uncommented, f"packages without a comment naming their notebooks: {uncommented}"


def test_cpu_extra_installs_the_cpu_tensorflow_build_on_linux():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    cpu = [Requirement(r) for r in project["optional-dependencies"]["cpu"]]
    linux = {"sys_platform": "linux", "platform_machine": "x86_64"}
    mac = {"sys_platform": "darwin", "platform_machine": "arm64"}
    assert [r.name for r in cpu if r.marker.evaluate(linux)] == ["tensorflow-cpu"]
    assert [r.name for r in cpu if r.marker.evaluate(mac)] == ["tensorflow"]
    assert not any(
        _normalise(Requirement(r).name).startswith("tensorflow") for r in project["dependencies"]
    ), "TensorFlow belongs in the cpu/gpu extras"
