#!/usr/bin/env bash
# Create the course's virtual environment (.venv by default) if it is missing, and install the course
# into it with the right TensorFlow build. Called by `make env` (and so by `make course` / `make test`).
#
#   TF=auto  (default) the GPU build where `nvidia-smi` sees an NVIDIA GPU, else the CPU build
#   TF=cpu | TF=gpu    force one
#   TF=none            keep the TensorFlow you already have: create the venv with
#                      VENV_ARGS=--system-site-packages so it sees your existing installation
set -euo pipefail

VENV=${VENV:-.venv}
TF=${TF:-auto}
VENV_ARGS=${VENV_ARGS:-}

pick_python() {
  # The course supports Python 3.10-3.12; prefer an explicit PYTHON, else the newest supported one.
  local candidates=("${PYTHON:-}" python3.12 python3.11 python3.10 python3)
  for py in "${candidates[@]}"; do
    [ -n "$py" ] || continue
    command -v "$py" >/dev/null 2>&1 || continue
    if "$py" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)'; then
      echo "$py"; return 0
    fi
  done
  echo "error: no Python 3.10-3.12 found on PATH. Install one (e.g. from python.org, pyenv or conda)" \
       "or point PYTHON=/path/to/python3.11 at it, then run make again." >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  py=$(pick_python)
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

echo ">> installing the course into $VENV (TensorFlow build: $TF)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --editable ".[$extras]"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (course)" >/dev/null
echo "$TF" > "$VENV/.installed"
