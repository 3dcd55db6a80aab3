"""The Setup cell's Colab branch, run as on Colab with a stand-in ``google.colab``.

Nothing is cloned or installed: ``subprocess.run`` and ``os.chdir`` are recorded instead. What is
checked is what a Colab learner relies on: the cell installs what Colab lacks, in the course's
ranges, and never upgrades Colab's own TensorFlow, Keras, numpy or ipywidgets.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebook_setup  # noqa: E402
import oldest_constraints  # noqa: E402

# Colab's own builds as its published package list gave them on 2026-08-19 (Python 3.13.15).
COLAB_OWN = {"tensorflow": "2.20.0", "keras": "3.13.2", "numpy": "2.1.3", "ipywidgets": "7.7.1"}
# Modules a Colab runtime lacked when the course was last tried there.
COLAB_LACKS = {"rasterio", "matplotlib_scalebar", "pooch", "pystac_client", "ipyleaflet"}


def _run_colab_branch(monkeypatch, lacks: set[str]) -> list[list[str]]:
    """Execute the Setup cell as on Colab; return the commands it ran."""
    commands: list[list[str]] = []
    widget_manager = []

    real_run = subprocess.run

    def run(command, *args, **kwargs):
        parts = [str(part) for part in command] if isinstance(command, list) else []
        if parts[:1] != ["git"] and "pip" not in parts:
            return real_run(command, *args, **kwargs)  # e.g. platform's own probes
        commands.append(parts)
        return subprocess.CompletedProcess(command, 0)

    real_find_spec = importlib.util.find_spec
    real_version = importlib.metadata.version

    def version(dist):
        return COLAB_OWN[dist] if dist in COLAB_OWN else real_version(dist)

    colab = types.ModuleType("google.colab")
    colab.output = types.SimpleNamespace(
        enable_custom_widget_manager=lambda: widget_manager.append(True)
    )
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr("os.chdir", lambda path: commands.append(["cd", str(path)]))
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in lacks else real_find_spec(name),
    )
    monkeypatch.setattr(importlib.metadata, "version", version)
    exec(compile(notebook_setup.setup_cell(), "<Setup cell>", "exec"), {"__name__": "__main__"})
    assert widget_manager == [True], "the cell must enable Colab's custom widget manager"
    return commands


def _pip_installs(commands: list[list[str]]) -> list[list[str]]:
    return [c[c.index("install") + 1 :] for c in commands if "pip" in c and "install" in c]


def test_colab_branch_installs_what_colab_lacks_and_pins_colabs_own_builds(monkeypatch):
    commands = _run_colab_branch(monkeypatch, COLAB_LACKS)
    assert commands[0][:2] == ["git", "clone"]
    (args,) = _pip_installs(commands)
    requirements = [Requirement(arg) for arg in args if not arg.startswith("-")]
    named = {req.name.lower(): str(req.specifier) for req in requirements}
    wanted = notebook_setup.colab_installs()
    for module in COLAB_LACKS:
        name = Requirement(wanted[module]).name.lower()
        assert name in named and named[name] == str(Requirement(wanted[module]).specifier)
    for dist, version in COLAB_OWN.items():
        # Colab's own build is named once, pinned at its own version: never upgraded.
        assert named.get(dist) == f"=={version}", f"{dist} is not pinned at Colab's {version}"
    assert len(named) == len(COLAB_LACKS) + len(COLAB_OWN), sorted(named)
    assert commands[-1] == ["cd", "/content/satellite-dl-course/notebooks"]


def test_colab_branch_installs_nothing_when_nothing_is_missing(monkeypatch):
    commands = _run_colab_branch(monkeypatch, set())
    assert _pip_installs(commands) == []


def test_colabs_versions_satisfy_the_declared_ranges():
    """Colab's builds must be inside pyproject.toml's ranges, or the pins above contradict them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["gpu"]]
    ranges = {Requirement(line).name.lower(): Requirement(line).specifier for line in declared}
    for dist, version in COLAB_OWN.items():
        assert ranges[dist].contains(version), f"Colab's {dist} {version} is outside {ranges[dist]}"
    python = project["requires-python"]
    assert SpecifierSet(python).contains("3.13.15"), f"Colab's Python 3.13 is outside {python}"


def test_oldest_constraints_pin_each_lower_bound():
    pins = dict(pin.split("==") for pin in oldest_constraints.oldest_constraints())
    for requirement in notebook_setup.core_dependencies().values():
        req = Requirement(requirement)
        (lower,) = [s.version for s in req.specifier if s.operator == ">="]
        assert pins[req.name.lower()] == f"{lower}.*", req
    assert "tensorflow-cpu" in pins and "pytest" not in pins and "ruff" not in pins
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python.startswith(f">={oldest_constraints.oldest_python()}")
