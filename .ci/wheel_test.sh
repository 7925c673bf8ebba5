#!/usr/bin/env bash
# `make wheel-test`: build the sdist and wheel, install the wheel into a fresh
# venv and check it from outside the source tree (.ci/wheel_check.py).
# Usage: .ci/wheel_test.sh BUILD_PYTHON VENV_PYTHON
set -euo pipefail
build_py=$1 venv_py=$2
root=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rm -rf dist
"$build_py" -m build --outdir dist . > "$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
wheel=$(ls dist/jaxconv-*.whl)
sdist=$(ls dist/jaxconv-*.tar.gz)

# What each archive must hold, and what the wheel must not (tests, bench).
"$build_py" - "$wheel" "$sdist" <<'PY'
import sys, tarfile, zipfile
wheel, sdist = sys.argv[1:]
names = set(zipfile.ZipFile(wheel).namelist())
for need in ("jaxconv/__init__.py", "jaxconv/_data/cost_model.json", "jaxconv/py.typed",
             "jaxconv/_methods/fft/engine.py"):
  assert need in names, f"{wheel} lacks {need}"
stray = sorted(n for n in names if not n.startswith(("jaxconv/", "jaxconv-")))
assert not stray, f"{wheel} holds files outside the package: {stray[:5]}"
top = tarfile.open(sdist).getnames()[0].split("/")[0]
members = set(tarfile.open(sdist).getnames())
for need in ("pyproject.toml", "README.md", "jaxconv/_data/cost_model.json", "jaxconv/py.typed"):
  assert f"{top}/{need}" in members, f"{sdist} lacks {need}"
print(f"{wheel}: {len(names)} files; {sdist}: {len(members)} members")
PY

"$venv_py" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --upgrade pip
"$tmp/venv/bin/python" -m pip install --quiet "$wheel"
# From an empty directory, so `import jaxconv` cannot find the source tree.
(cd "$tmp" && "$tmp/venv/bin/python" "$root/.ci/wheel_check.py")
