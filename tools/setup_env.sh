#!/usr/bin/env bash
# Create the course's virtual environment (.venv by default) if it is missing, and install the course
# into it with the right TensorFlow build. Called by `make env` (and so by `make course` / `make test`).
#
#   TF=auto  (default) the GPU build where `nvidia-smi` sees an NVIDIA GPU, else the CPU build
#   TF=cpu | TF=gpu    force one
#   TF=none            keep the TensorFlow you already have: create the venv with
#                      VENV_ARGS=--system-site-packages so it sees your existing installation
#   PYTHON=/path/to/python      create the venv with this interpreter
#   PYTHON_VERSION=3.13         create it with that version (on PATH, or installed by pyenv)
#   OLDEST=1                    the lower-bounds environment (make test-oldest): the oldest Python
#                               and the oldest version of every dependency pyproject.toml declares
set -euo pipefail

VENV=${VENV:-.venv}
TF=${TF:-auto}
VENV_ARGS=${VENV_ARGS:-}
OLDEST=${OLDEST:-}
here=$(dirname "$0")

if [ ! -x "$VENV/bin/python" ]; then
  if [ -n "${PYTHON:-}" ]; then
    py=$PYTHON
  elif [ -n "$OLDEST" ]; then
    py=$("$here/find_python.sh" oldest)
  else
    py=$("$here/find_python.sh" ${PYTHON_VERSION:-})
  fi
  echo ">> creating $VENV with $($py --version)"
  "$py" -m venv $VENV_ARGS "$VENV"
fi

if [ "$TF" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then TF=gpu; else TF=cpu; fi
fi
case "$TF" in
  cpu|gpu) extras="$TF,dev" ;;
  none) extras="dev" ;;
  *) echo "error: TF=$TF is not one of auto, cpu, gpu, none" >&2; exit 2 ;;
esac

constraints=()
if [ -n "$OLDEST" ]; then
  # tools/oldest_constraints.py reads pyproject.toml; Python 3.10 needs tomli for that.
  "$VENV/bin/python" -m pip install --quiet "tomli>=2; python_version < '3.11'"
  "$VENV/bin/python" "$here/oldest_constraints.py" -o "$VENV/oldest-constraints.txt"
  constraints=(--constraint "$VENV/oldest-constraints.txt")
  echo ">> the oldest declared versions: $(tr '\n' ' ' < "$VENV/oldest-constraints.txt")"
fi

echo ">> installing the course into $VENV (TensorFlow build: $TF)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "${constraints[@]}" --editable ".[$extras]"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (course)" >/dev/null
echo "$TF" > "$VENV/.installed"
