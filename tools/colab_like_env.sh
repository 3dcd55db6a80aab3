#!/usr/bin/env bash
# Check the course as a Colab learner meets it, without Colab: a virtual environment with Colab's
# Python and preinstalled versions (tools/colab_runtime.txt), the notebooks' Setup cell run there
# with a stand-in `google.colab` (it really installs what that runtime lacks), then the tests.
#
#   tools/colab_like_env.sh            build .venv-colab, run the Setup cell, then `pytest`
#   tools/colab_like_env.sh -m "not notebook"   arguments go to pytest
#
# It fails when the Setup cell changes any of Colab's own TensorFlow, Keras, numpy or ipywidgets,
# or when its environment check does not report OK. Needs the package index (it installs).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-colab}
runtime=tools/colab_runtime.txt

if [ ! -x "$VENV/bin/python" ]; then
  py=$(tools/find_python.sh "$(awk '$1 == "python" {print $2}' "$runtime")")
  "$py" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  grep -v -E '^(#|python |$)' "$runtime" > "$VENV/colab-runtime.txt"
  echo ">> installing Colab's preinstalled packages into $VENV"
  "$VENV/bin/python" -m pip install --quiet -r "$VENV/colab-runtime.txt"
fi

echo ">> running the Setup cell's Colab branch"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as metadata
import os
import subprocess
import sys
import types
from pathlib import Path

sys.path.insert(0, "tools")
import notebook_setup  # noqa: E402

before = {dist: metadata.version(dist) for dist in ("keras", "numpy", "ipywidgets")}
before["tensorflow"] = metadata.version("tensorflow-cpu")
repo = Path.cwd()
real_run = subprocess.run
installs = []


def run(command, *args, **kwargs):
    if list(command[:2]) == ["git", "clone"]:
        return subprocess.CompletedProcess(command, 0)  # this checkout stands in for the clone
    if "pip" in command:
        installs.append(command[command.index("install") + 1 :])
    return real_run(command, *args, **kwargs)


colab = types.ModuleType("google.colab")
colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: None)
sys.modules["google.colab"] = colab
subprocess.run = run
real_chdir = os.chdir
os.chdir = lambda path: real_chdir(repo / "notebooks")  # this checkout stands in for the clone
cell = notebook_setup.setup_cell()
cell = cell.replace("check_environment()  #", "report = check_environment()  #")
namespace = {"__name__": "__main__"}
exec(compile(cell, "<Setup cell>", "exec"), namespace)
report = namespace["report"]
print(report)
print("pip install arguments:", installs)
after = {dist: metadata.version(dist) for dist in ("keras", "numpy", "ipywidgets")}
after["tensorflow"] = metadata.version("tensorflow-cpu")
changed = {dist: (before[dist], after[dist]) for dist in before if before[dist] != after[dist]}
if changed:
    sys.exit(f"the Setup cell changed Colab's own packages: {changed}")
if not report.ok:
    sys.exit(f"the environment check reports problems: {report.problems}")
print("Setup cell: OK; Colab's own packages unchanged:", after)
PY

echo ">> the course and its test tools, without touching Colab's packages"
"$VENV/bin/python" -m pip install --quiet --no-deps --editable .
"$VENV/bin/python" -m pip install --quiet pytest hypothesis nbformat papermill nbconvert \
  "tomli>=2; python_version < '3.11'" -c <("$VENV/bin/python" -m pip freeze | grep -i -E '^(tensorflow-cpu|keras|numpy|ipywidgets)==')
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
"$VENV/bin/python" -m pytest --ignore=tests/test_browser_roi.py "$@"
