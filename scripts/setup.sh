#!/usr/bin/env bash
# Create .venv with Python >= 3.12 and install ppzoo with its test extras. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local candidates=("${PYTHON:-}" python3.12 python3.13 "$HOME"/.pyenv/versions/3.12*/bin/python "$HOME"/.pyenv/versions/3.13*/bin/python python3)
  for c in "${candidates[@]}"; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
  py=$(find_python) || { echo "ppzoo needs Python >= 3.12 (ArviZ 1.x); none found. Set PYTHON=/path/to/python3.12." >&2; exit 1; }
  echo "Creating .venv with $py"
  rm -rf .venv
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# setuptools prints an information-only banner on every editable install whose packages map to folders of
# another name (ppzoo.models -> models/); it asks nothing of the user, so it is filtered by its message only.
PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install --quiet -e ".[test,ray]"
echo "ppzoo installed in $(pwd)/.venv"
