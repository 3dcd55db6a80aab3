#!/usr/bin/env bash
# Print the path of a Python interpreter the course supports, or fail with a message saying how to
# get one. Used by tools/setup_env.sh (make env, make test-oldest) and .ci/run.
#
#   tools/find_python.sh            the newest supported Python on PATH (python3.13 ... python3)
#   tools/find_python.sh 3.11       a Python 3.11: on PATH, else one that pyenv has installed
#   tools/find_python.sh oldest     the oldest Python pyproject.toml's requires-python admits
#   tools/find_python.sh newest     the newest one it admits (on PATH or pyenv's)
#
# The supported range is read from pyproject.toml (requires-python = ">=3.A,<3.B").
set -euo pipefail
cd "$(dirname "$0")/.."

spec=$(sed -n 's/^requires-python *= *"\(.*\)"/\1/p' pyproject.toml)
low=$(sed -n 's/.*>=3\.\([0-9]*\).*/\1/p' <<<"$spec")
high=$(sed -n 's/.*<3\.\([0-9]*\).*/\1/p' <<<"$spec")
if [ -z "$low" ] || [ -z "$high" ]; then
  echo "error: pyproject.toml's requires-python ($spec) must read \">=3.A,<3.B\"" >&2
  exit 2
fi

is_version() {  # is_version PYTHON 3.X: PYTHON runs and is that version
  "$1" -c "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$2' else 1)" \
    >/dev/null 2>&1
}

find_version() {  # find_version 3.X: on PATH first, then among pyenv's installed versions
  local minor=$1 py
  if command -v "python$minor" >/dev/null 2>&1 && is_version "python$minor" "$minor"; then
    command -v "python$minor"; return 0
  fi
  if command -v pyenv >/dev/null 2>&1; then
    for py in $(ls -d "$(pyenv root)/versions/$minor".*/bin/python 2>/dev/null | sort -V -r); do
      if is_version "$py" "$minor"; then echo "$py"; return 0; fi
    done
  fi
  return 1
}

want=${1:-}
case "$want" in
  oldest) want="3.$low" ;;
  newest) want="3.$((high - 1))" ;;
esac

if [ -n "$want" ]; then
  minor=${want#3.}
  if ! [[ "$want" =~ ^3\.[0-9]+$ ]] || [ "$minor" -lt "$low" ] || [ "$minor" -ge "$high" ]; then
    echo "error: Python $want is not one the course supports ($spec in pyproject.toml)." >&2
    exit 2
  fi
  if find_version "$want"; then exit 0; fi
  echo "error: no Python $want found (on PATH as python$want, or installed by pyenv)." \
       "Install one (python.org, pyenv install $want, conda) and run again." >&2
  exit 1
fi

# Default: the newest supported Python on PATH, then plain python3 if it is supported.
for ((minor = high - 1; minor >= low; minor--)); do
  if command -v "python3.$minor" >/dev/null 2>&1 && is_version "python3.$minor" "3.$minor"; then
    command -v "python3.$minor"; exit 0
  fi
done
if command -v python3 >/dev/null 2>&1 && python3 -c \
  "import sys; sys.exit(0 if (3, $low) <= sys.version_info[:2] < (3, $high) else 1)"; then
  command -v python3; exit 0
fi
echo "error: no Python 3.$low-3.$((high - 1)) found on PATH. Install one (e.g. from python.org," \
     "pyenv or conda) or point PYTHON=/path/to/python3.$((high - 1)) at it, then run make again." >&2
exit 1
