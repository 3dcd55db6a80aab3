"""The environment check run by every notebook's Setup cell.

It reports the versions of the packages the course needs, the Keras backend, the GPUs the
backend can see and whether the notebook runs on Colab, and turns problems into advice::

    from helpers import env

    report = env.check_environment()
    report          # a table in Jupyter; print(report) in a terminal
    assert report.ok, report.advice

Minimum versions come from the installed ``satellite-dl-course`` distribution (its
``pyproject.toml`` dependencies), so they never drift from what ``pip install`` enforces; a
small fallback table is used when the course is not installed (e.g. a notebook opened on its own).
"""

from __future__ import annotations

import html
import importlib.metadata
import logging
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

__all__ = ["DISTRIBUTION", "FALLBACK_REQUIREMENTS", "EnvironmentReport", "check_environment"]

logger = logging.getLogger(__name__)

#: Name of the course's distribution in pyproject.toml.
DISTRIBUTION = "satellite-dl-course"

#: The project file of a cloned course (on Colab the course is cloned, not installed).
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

#: Used when the course is neither installed nor cloned; keep in step with pyproject.toml.
FALLBACK_REQUIREMENTS: dict[str, str] = {
    "python": ">=3.10,<3.14",
    "numpy": ">=1.26,<3",
    "rasterio": ">=1.3.9,<2",
    "shapely": ">=2.0,<3",
    "pyproj": ">=3.6",
    "scikit-image": ">=0.22",
    "matplotlib": ">=3.8",
    "ipywidgets": ">=7.6,<9",
    "keras": ">=3.8,<4",
    "tensorflow": ">=2.16,<2.22",
}

# Packages reported, in order: display name -> distribution names that provide it.
_PACKAGES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "rasterio": ("rasterio",),
    "shapely": ("shapely",),
    "pyproj": ("pyproj",),
    "scikit-image": ("scikit-image",),
    "matplotlib": ("matplotlib",),
    "geopandas": ("geopandas",),
    "scikit-learn": ("scikit-learn",),
    "pyyaml": ("pyyaml", "PyYAML"),
    "ipywidgets": ("ipywidgets",),
    "ipyleaflet": ("ipyleaflet",),
    "keras": ("keras",),
}
_TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly")

NO_GPU_ADVICE = (
    "Running on CPU: the notebooks state their CPU run times; on Colab choose "
    "Runtime > Change runtime type > GPU."
)


@dataclass
class EnvironmentReport:
    """What :func:`check_environment` found. ``ok`` is False when a package is missing or
    outside its supported versions; running without a GPU is fine (only advice)."""

    python: str
    platform: str
    packages: dict[str, str | None]
    requirements: dict[str, str]
    gdal: str | None
    keras_backend: str | None
    tensorflow: str | None
    gpus: list[str]
    on_colab: bool
    advice: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every required package is present in a supported version."""
        return not self.problems

    @property
    def device(self) -> str:
        """ "GPU" when the Keras backend sees at least one GPU, else "CPU"."""
        return "GPU" if self.gpus else "CPU"

    def rows(self) -> list[tuple[str, str, str]]:
        """The table as ``(item, value, required)`` rows."""
        rows = [("python", self.python, self.requirements.get("python", ""))]
        for name, version in self.packages.items():
            rows.append((name, version or "not installed", self.requirements.get(name, "")))
        rows += [
            ("GDAL (rasterio)", self.gdal or "unknown", ""),
            ("Keras backend", self.keras_backend or "unknown", ""),
        ]
        if self.tensorflow is not None or self.keras_backend == "tensorflow":
            rows.append(
                (
                    "tensorflow",
                    self.tensorflow or "not installed",
                    self.requirements.get("tensorflow", ""),
                )
            )
        rows += [
            ("GPUs", ", ".join(self.gpus) if self.gpus else "none (CPU)", ""),
            ("Colab", "yes" if self.on_colab else "no", ""),
            ("platform", self.platform, ""),
            ("status", "OK" if self.ok else "PROBLEMS (see advice)", ""),
        ]
        return rows

    def __str__(self) -> str:
        rows = [("item", "version / value", "required")] + self.rows()
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if self.advice:
            lines += ["", "Advice:"] + [f"- {a}" for a in self.advice]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = "".join(
            "<tr>"
            + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>" for c in row)
            + "</tr>"
            for row in self.rows()
        )
        table = (
            "<table><thead><tr><th style='text-align:left'>item</th>"
            "<th style='text-align:left'>version / value</th>"
            f"<th style='text-align:left'>required</th></tr></thead><tbody>{cells}</tbody></table>"
        )
        advice = "".join(f"<li>{html.escape(a)}</li>" for a in self.advice)
        return table + (f"<p><b>Advice</b></p><ul>{advice}</ul>" if advice else "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (for logs and run metadata)."""
        return {
            "python": self.python,
            "platform": self.platform,
            "packages": dict(self.packages),
            "requirements": dict(self.requirements),
            "gdal": self.gdal,
            "keras_backend": self.keras_backend,
            "tensorflow": self.tensorflow,
            "gpus": list(self.gpus),
            "on_colab": self.on_colab,
            "device": self.device,
            "ok": self.ok,
            "advice": list(self.advice),
            "problems": list(self.problems),
        }


# --------------------------------------------------------------------------------------------
# Probes (small functions so tests can replace them)
# --------------------------------------------------------------------------------------------


def _installed_version(distributions: tuple[str, ...]) -> str | None:
    """Version of the first installed distribution among ``distributions``, else None."""
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _requirements() -> dict[str, str]:
    """Version specifiers by package name: from the installed course package, else the fallback."""
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
        python = importlib.metadata.metadata(DISTRIBUTION).get("Requires-Python")
    except importlib.metadata.PackageNotFoundError:
        declared, python = _pyproject_requirements(PYPROJECT)
        if declared is None:
            logger.info("%s is not installed; using the fallback version table.", DISTRIBUTION)
            return dict(FALLBACK_REQUIREMENTS)
    found: dict[str, str] = {}
    if python:
        found["python"] = _readable(SpecifierSet(str(python)))
    for line in declared:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        name = requirement.name.lower()
        if name in _TENSORFLOW_DISTRIBUTIONS:
            # The cpu/gpu extras name different wheels with the same version range.
            name = "tensorflow"
        if requirement.marker is not None and "extra" not in str(requirement.marker):
            if not requirement.marker.evaluate():
                continue
        if name in found or not str(requirement.specifier):
            continue
        found[name] = _readable(requirement.specifier)
    for name, spec in FALLBACK_REQUIREMENTS.items():
        found.setdefault(name, spec)
    return found


def _pyproject_requirements(path: Path) -> tuple[list[str] | None, str | None]:
    """Core dependencies and Requires-Python of a cloned course's pyproject.toml, if any."""
    if not path.is_file():
        return None, None
    try:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # Python 3.10
            import tomli as tomllib
        project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    except (ImportError, KeyError, ValueError):
        return None, None
    extras = project.get("optional-dependencies", {})
    declared = list(project.get("dependencies", [])) + [
        f"{line} ; extra == '{name}'" if ";" not in line else f"{line} and extra == '{name}'"
        for name in ("cpu", "gpu")
        for line in extras.get(name, [])
    ]
    return declared, project.get("requires-python")


def _readable(specifier: SpecifierSet) -> str:
    """``>=1.26,<3`` rather than packaging's alphabetical ``<3,>=1.26``."""
    order = {">=": 0, ">": 0, "~=": 0, "==": 1, "===": 1, "!=": 2, "<=": 3, "<": 3}
    parts = sorted(specifier, key=lambda s: (order.get(s.operator, 4), str(s)))
    return ",".join(str(s) for s in parts)


def _gdal_version() -> str | None:
    try:
        import rasterio
    except ImportError:
        return None
    return getattr(rasterio, "__gdal_version__", None)


def _keras_backend() -> str | None:
    try:
        import keras
    except ImportError:
        return None
    return keras.config.backend()


def _tensorflow_version() -> str | None:
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf.__version__


def _gpus(backend: str | None) -> list[str]:
    """Names of the GPUs the active Keras backend can use (imports only that backend)."""
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            names = []
            for device in tf.config.list_physical_devices("GPU"):
                details = tf.config.experimental.get_device_details(device)
                names.append(details.get("device_name", device.name))
            return names
        if backend == "jax":
            import jax

            return [str(d) for d in jax.devices() if d.platform == "gpu"]
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            return []
    except Exception as exc:  # a broken driver must not stop the Setup cell
        logger.warning("Could not list GPUs for the %s backend: %s", backend, exc)
    return []


def _on_colab() -> bool:
    return "google.colab" in sys.modules


def _has_nvidia_driver() -> bool:
    return shutil.which("nvidia-smi") is not None


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------


def _version_problem(
    name: str, version: str | None, spec: str, on_colab: bool = False
) -> str | None:
    """Advice when ``version`` is missing, too old or excluded by ``spec``, else None.

    A version *newer* than the tested range is not a problem (see :func:`_version_note`): it
    usually works, and on Colab the learner cannot choose it anyway.
    """
    restart = "then Runtime > Restart session" if on_colab else "and restart the kernel"
    pip = "%pip install" if on_colab else "pip install"
    if version is None:
        return f"{name} is not installed: run `{pip} '{name}{spec}'` {restart}."
    verdict = _compare(version, spec)
    if verdict in ("ok", "newer"):
        return None
    if name == "python":
        if on_colab:
            return (
                f"Colab's Python {version} is older than the course needs ({spec}): choose "
                "Runtime > Change runtime type > Runtime version > Latest, then run this cell "
                "again."
            )
        return (
            f"Python {version} is not supported (need {spec}): create the environment with a "
            "supported Python (`make env` picks one; or PYTHON=/path/to/python3.12 make env)."
        )
    direction = "too old" if verdict == "older" else "not supported"
    return (
        f"{name} {version} is {direction} (need {spec}): run `{pip} --upgrade "
        f"'{name}{spec}'` {restart}."
    )


def _version_note(name: str, version: str | None, spec: str, on_colab: bool = False) -> str | None:
    """A calm note when ``version`` is newer than the range the course is tested with, else None."""
    if version is None or _compare(version, spec) != "newer":
        return None
    label = "Python" if name == "python" else name
    where = "Colab's " if on_colab else ""
    if name == "python" or on_colab:
        fix = "please report it in the course's issues"
    else:
        fix = f"install a tested version with `pip install '{name}{spec}'`"
    return (
        f"{where}{label} {version} is newer than the versions the course is tested with ({spec}); "
        f"it usually works. If a cell fails inside {label}, {fix}."
    )


def _compare(version: str, spec: str) -> str:
    """``"ok"``, ``"older"`` (below a lower bound), ``"newer"`` (above an upper bound only) or
    ``"excluded"``. A version that cannot be parsed (a local build) counts as ``"ok"``."""
    if not spec:
        return "ok"
    try:
        parsed = Version(version)
    except InvalidVersion:
        return "ok"  # a local build with an odd version string; nothing reliable to say
    specifiers = SpecifierSet(spec)
    if specifiers.contains(parsed, prereleases=True):
        return "ok"
    failed = [s for s in specifiers if not s.contains(parsed, prereleases=True)]
    if all(s.operator in ("<", "<=") for s in failed):
        return "newer"
    if all(s.operator in (">=", ">", "~=", "==") for s in failed):
        minimums = [s.version for s in specifiers if s.operator in (">=", ">", "==", "~=")]
        if minimums and parsed < Version(max(minimums, key=Version)):
            return "older"
    return "excluded"


def check_environment() -> EnvironmentReport:
    """Check package versions, the Keras backend and GPUs; return a report with advice.

    Imports Keras (and so its backend, e.g. TensorFlow), which takes a few seconds the first
    time. Nothing is installed or changed.

    Returns:
        An :class:`EnvironmentReport`; display it in a notebook cell, ``print`` it in a terminal,
        and check ``report.ok``.

    Example:
        >>> report = check_environment()  # doctest: +SKIP
        >>> report.ok, report.device  # doctest: +SKIP
        (True, 'CPU')
    """
    requirements = _requirements()
    packages = {name: _installed_version(dists) for name, dists in _PACKAGES.items()}
    backend = _keras_backend() if packages.get("keras") else None
    tensorflow = None
    if backend == "tensorflow" or backend is None:
        tensorflow = _installed_version(_TENSORFLOW_DISTRIBUTIONS)
        if tensorflow is not None and backend == "tensorflow":
            tensorflow = _tensorflow_version() or tensorflow
    gpus = _gpus(backend)
    on_colab = _on_colab()
    python = platform.python_version()

    checked = [("python", python), *packages.items()]
    if backend == "tensorflow":
        checked.append(("tensorflow", tensorflow))
    problems, notes = [], []
    for name, version in checked:
        spec = requirements.get(name, "")
        problem = _version_problem(name, version, spec, on_colab)
        if problem:
            problems.append(problem)
        note = _version_note(name, version, spec, on_colab)
        if note:
            notes.append(note)

    advice = problems + notes
    if not gpus:
        advice.append(NO_GPU_ADVICE)
        if _has_nvidia_driver() and not on_colab and backend == "tensorflow":
            advice.append(
                "nvidia-smi finds a GPU but TensorFlow does not: install the CUDA build with "
                "`pip install -e '.[gpu]'` and restart the kernel."
            )
    report = EnvironmentReport(
        python=python,
        platform=platform.platform(terse=True),
        packages=packages,
        requirements=requirements,
        gdal=_gdal_version(),
        keras_backend=backend,
        tensorflow=tensorflow,
        gpus=gpus,
        on_colab=on_colab,
        advice=advice,
        problems=problems,
    )
    for line in advice:
        logger.info(line)
    return report
