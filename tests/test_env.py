"""Tests for helpers.env: the Setup-cell environment report and its advice."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys
import types

import pytest

from helpers import env


@pytest.fixture(scope="module")
def report() -> env.EnvironmentReport:
    # One real check per test module: it imports Keras and its backend (a few seconds).
    return env.check_environment()


def test_report_fields_are_populated(report):
    import keras
    import numpy
    import rasterio

    assert report.python == platform.python_version()
    assert report.packages["numpy"] == numpy.__version__
    assert report.packages["rasterio"] == rasterio.__version__
    assert set(report.packages) >= {"shapely", "pyproj", "scikit-image", "matplotlib", "keras"}
    assert all(report.packages.values())  # everything the course needs is installed here
    assert report.gdal == rasterio.__gdal_version__
    assert report.keras_backend == keras.config.backend()
    if report.keras_backend == "tensorflow":
        import tensorflow as tf

        assert report.tensorflow == tf.__version__
    assert report.on_colab is False
    assert report.requirements["numpy"].startswith(">=")
    assert report.ok, report.problems


def test_report_renders_as_text_table_html_and_json(report):
    text = str(report)
    lines = text.splitlines()
    assert lines[0].split() == ["item", "version", "/", "value", "required"]
    assert any(line.startswith("numpy ") and report.packages["numpy"] in line for line in lines)
    assert "Keras backend" in text and "GPUs" in text
    page = report._repr_html_()
    assert page.startswith("<table>") and "<td style='text-align:left'>numpy</td>" in page
    assert "&gt;=" in page  # specifiers are escaped
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["device"] in ("CPU", "GPU")


def test_no_gpu_gives_cpu_advice(monkeypatch):
    monkeypatch.setattr(env, "_gpus", lambda backend: [])
    monkeypatch.setattr(env, "_has_nvidia_driver", lambda: False)
    report = env.check_environment()
    assert report.gpus == [] and report.device == "CPU"
    assert env.NO_GPU_ADVICE in report.advice
    assert "Runtime > Change runtime type > GPU" in str(report)
    assert report.ok  # a CPU is enough to follow the course


def test_gpu_present_gives_no_cpu_advice(monkeypatch):
    monkeypatch.setattr(env, "_gpus", lambda backend: ["NVIDIA T4"])
    report = env.check_environment()
    assert report.device == "GPU" and "NVIDIA T4" in str(report)
    assert env.NO_GPU_ADVICE not in report.advice


def test_driver_without_gpu_build_is_explained(monkeypatch):
    monkeypatch.setattr(env, "_gpus", lambda backend: [])
    monkeypatch.setattr(env, "_has_nvidia_driver", lambda: True)
    monkeypatch.setattr(env, "_keras_backend", lambda: "tensorflow")
    report = env.check_environment()
    assert any(".[gpu]" in line for line in report.advice)


def test_too_old_package_is_a_problem_with_upgrade_advice(monkeypatch):
    real = env._installed_version

    def fake(distributions):
        return "1.20.0" if distributions == ("numpy",) else real(distributions)

    monkeypatch.setattr(env, "_installed_version", fake)
    report = env.check_environment()
    assert not report.ok
    (problem,) = report.problems
    assert problem.startswith("numpy 1.20.0 is too old")
    assert "pip install --upgrade 'numpy>=1.26" in problem
    assert problem in report.advice
    assert "PROBLEMS" in str(report)


def test_missing_package_is_a_problem(monkeypatch):
    real = env._installed_version
    monkeypatch.setattr(env, "_installed_version", lambda d: None if d == ("pyproj",) else real(d))
    report = env.check_environment()
    assert report.packages["pyproj"] is None
    assert any(p.startswith("pyproj is not installed") for p in report.problems)
    assert "not installed" in str(report)


@pytest.mark.parametrize(
    ("name", "version", "spec", "expected"),
    [
        ("numpy", "1.26.0", ">=1.26,<3", None),
        ("numpy", "1.25.2", ">=1.26,<3", "numpy 1.25.2 is too old (need >=1.26,<3)"),
        ("numpy", "3.0.0", ">=1.26,<3", None),  # newer than tested: a note, not a problem
        ("numpy", "2.0.1", ">=1.26,!=2.0.1", "numpy 2.0.1 is not supported"),
        ("keras", "3.3.0rc1", ">=3.3", "keras 3.3.0rc1 is too old"),
        ("tensorflow", "2.21.0", ">=2.16,<2.22", None),
        ("python", "3.9.18", ">=3.10,<3.14", "Python 3.9.18 is not supported"),
        ("python", "3.14.0", ">=3.10,<3.14", None),
        ("pyproj", "3.7.0", "", None),
        ("pyproj", "not-a-version", ">=3.6", None),
    ],
)
def test_version_comparison(name, version, spec, expected):
    problem = env._version_problem(name, version, spec)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(expected)


@pytest.mark.parametrize(
    ("name", "version", "spec", "expected"),
    [
        ("numpy", "3.0.0", ">=1.26,<3", "numpy 3.0.0 is newer than the versions"),
        ("python", "3.14.0", ">=3.10,<3.14", "Python 3.14.0 is newer than the versions"),
        ("numpy", "2.1.3", ">=1.26,<3", None),
        ("numpy", "1.25.2", ">=1.26,<3", None),  # too old is a problem, not a note
    ],
)
def test_newer_than_tested_is_a_calm_note(name, version, spec, expected):
    note = env._version_note(name, version, spec)
    if expected is None:
        assert note is None
    else:
        assert note is not None and note.startswith(expected) and "usually works" in note


# Colab's runtime as its published package list gave it on 2026-08-19 (Python 3.13), and the
# Colab-like stack one year older (Python 3.11). The Setup cell must report OK on both.
COLAB_RUNTIMES = {
    "2026-08 (Python 3.13)": {
        "python": "3.13.15",
        "tensorflow": "2.20.0",
        "keras": "3.13.2",
        "numpy": "2.1.3",
        "ipywidgets": "7.7.1",
        "ipyleaflet": "0.20.0",
        "rasterio": "1.5.1",
        "geopandas": "1.1.4",
    },
    "2025 (Python 3.11)": {
        "python": "3.11.13",
        "tensorflow": "2.19.0",
        "keras": "3.10.0",
        "numpy": "2.0.2",
        "ipywidgets": "7.7.1",
    },
}


def _colab_like(monkeypatch, versions: dict[str, str]) -> None:
    """Make the check see ``versions`` on Colab (the other packages stay as installed here)."""
    real = env._installed_version
    by_distribution = {dist: name for name, dists in env._PACKAGES.items() for dist in dists}

    def installed(distributions):
        for dist in distributions:
            name = (
                "tensorflow" if dist in env._TENSORFLOW_DISTRIBUTIONS else by_distribution.get(dist)
            )
            if name in versions:
                return versions[name]
        return real(distributions)

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(env, "_installed_version", installed)
    monkeypatch.setattr(env, "_keras_backend", lambda: "tensorflow")
    monkeypatch.setattr(env, "_tensorflow_version", lambda: versions["tensorflow"])
    monkeypatch.setattr(env, "_gpus", lambda backend: ["Tesla T4"])
    monkeypatch.setattr(env.platform, "python_version", lambda: versions["python"])


@pytest.mark.parametrize("runtime", sorted(COLAB_RUNTIMES))
def test_colab_runtime_reports_ok_without_alarming_advice(monkeypatch, runtime):
    versions = COLAB_RUNTIMES[runtime]
    _colab_like(monkeypatch, versions)
    report = env.check_environment()
    assert report.on_colab and report.ok, report.problems
    assert report.python == versions["python"] and report.tensorflow == versions["tensorflow"]
    assert report.packages["ipywidgets"] == versions["ipywidgets"]
    assert report.advice == [], report.advice  # a GPU runtime with supported versions: silence
    assert "status" in str(report) and "OK" in str(report).splitlines()[-1]


def test_colab_advice_is_what_a_colab_learner_can_do(monkeypatch):
    versions = dict(COLAB_RUNTIMES["2026-08 (Python 3.13)"], python="3.9.20", numpy="1.20.0")
    versions["keras"] = "4.0.0"
    _colab_like(monkeypatch, versions)
    report = env.check_environment()
    assert not report.ok
    python, numpy = report.problems
    assert "Runtime > Change runtime type > Runtime version" in python
    assert "create the environment" not in python
    assert "%pip install --upgrade 'numpy>=1.26" in numpy and "Restart session" in numpy
    (note,) = [a for a in report.advice if a not in report.problems]
    assert note.startswith("Colab's keras 4.0.0 is newer") and "report it" in note


def test_requirements_come_from_the_installed_distribution():
    try:
        declared = importlib.metadata.requires(env.DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the course package is not installed")
    requirements = env._requirements()
    numpy_line = next(line for line in declared if line.startswith("numpy"))
    for clause in numpy_line[len("numpy") :].split(","):
        assert clause.strip() in requirements["numpy"].split(",")
    assert "tensorflow" in requirements and "tensorflow-cpu" not in requirements
    assert requirements["numpy"].startswith(">=")  # lower bound first, as people write it


def test_requirements_fall_back_when_not_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(env, "DISTRIBUTION", "no-such-distribution-here")
    monkeypatch.setattr(env, "PYPROJECT", tmp_path / "no_pyproject.toml")
    assert env._requirements() == env.FALLBACK_REQUIREMENTS


def test_a_cloned_course_takes_its_requirements_from_pyproject(monkeypatch, tmp_path):
    """On Colab the course is cloned, not installed: pyproject.toml still gives the ranges."""
    monkeypatch.setattr(env, "DISTRIBUTION", "no-such-distribution-here")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\nrequires-python = ">=3.10"\n'
        'dependencies = ["pyyaml>=6", "numpy>=9.9"]\n'
        '[project.optional-dependencies]\ncpu = ["tensorflow-cpu>=2.16,<2.22"]\n'
    )
    monkeypatch.setattr(env, "PYPROJECT", pyproject)
    requirements = env._requirements()
    assert requirements["pyyaml"] == ">=6" and requirements["numpy"] == ">=9.9"
    assert requirements["tensorflow"] == ">=2.16,<2.22"
    assert requirements["python"] == ">=3.10"
    report = env.check_environment()
    assert not report.ok and any("numpy" in problem for problem in report.problems)


def test_colab_is_detected(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert env._on_colab() is True


def test_gpu_listing_imports_only_the_active_backend(monkeypatch):
    fake_torch = types.ModuleType("torch")
    fake_torch.cuda = types.SimpleNamespace(
        is_available=lambda: True, device_count=lambda: 1, get_device_name=lambda i: "Fake GPU"
    )
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    assert env._gpus("torch") == ["Fake GPU"]

    fake_jax = types.ModuleType("jax")
    fake_jax.devices = lambda: [
        types.SimpleNamespace(platform="cpu", __str__=lambda self: "cpu"),
        types.SimpleNamespace(platform="gpu"),
    ]
    monkeypatch.setitem(sys.modules, "jax", fake_jax)
    assert len(env._gpus("jax")) == 1
    assert env._gpus(None) == []


def test_broken_gpu_probe_does_not_stop_the_check(monkeypatch):
    broken = types.ModuleType("torch")  # no .cuda attribute -> AttributeError inside
    monkeypatch.setitem(sys.modules, "torch", broken)
    assert env._gpus("torch") == []
