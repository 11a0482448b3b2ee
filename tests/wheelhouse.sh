#!/usr/bin/env bash
# The wheels that tests/test_compiled_dependency.py vendors with no network: numpy built for
# Lambda's python3.12 (manylinux2014, x86_64), downloaded once into tests/.wheelhouse (git-ignored).
# Tests never download; they skip ("run tests/wheelhouse.sh") when it is missing, and fail under CI.
# Idempotent: silent when the wheel is already there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/.wheelhouse"
numpy_version="2.1.3"  # keep in step with NUMPY in tests/test_compiled_dependency.py

shopt -s nullglob
have=("$dest"/numpy-"$numpy_version"-cp312-cp312-*manylinux*x86_64*.whl)
if [ "${#have[@]}" -gt 0 ]; then
  exit 0
fi

python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$here/../.venv/bin/python" ]; then python="$here/../.venv/bin/python"; else python="python3"; fi
fi
echo "wheelhouse: downloading numpy==$numpy_version for python3.12 (manylinux2014_x86_64) into tests/.wheelhouse"
mkdir -p "$dest"
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --platform manylinux2014_x86_64 --python-version 3.12 --implementation cp --abi cp312 \
  -d "$dest" "numpy==$numpy_version"
