#!/usr/bin/env bash
# Build fednb's wheel once (node builds the JupyterLab extension into it), install the wheel in a
# fresh virtualenv on a PATH without node, and show that JupyterLab finds the prebuilt extension and
# the server extension.
#
#   scripts/check_wheel.sh [--full] [WORKDIR]
#
# default  the fresh venv installs the wheel alone and borrows the dependencies of the Python that
#          runs this script (seconds; what tests/test_wheel.py runs)
# --full   the fresh venv installs the wheel and JupyterLab with every dependency from the package
#          index (a minute; what a user without node does)
# PYTHON   the interpreter that builds (default: python); it needs build, hatchling,
#          hatch-jupyter-builder and jupyter_builder (the test extra has them)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
full=0
if [ "${1:-}" = "--full" ]; then full=1; shift; fi
work="${1:-$(mktemp -d -t fednb-wheel-XXXXXX)}"
python="$(command -v "${PYTHON:-python}")"
mkdir -p "$work"

echo "== build the wheel (skips npm when fednb/labextension is already built)"
if ! "$python" -m build --wheel --no-isolation --outdir "$work/dist" "$here" >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log"
    exit 1
fi
wheel="$(ls "$work"/dist/fednb-*.whl)"
echo "$(basename "$wheel")"

echo "== a fresh venv whose PATH has no node"
"$python" -m venv --clear "$work/venv"
bin="$work/venv/bin"
export PATH="$bin"
unset PYTHONPATH VIRTUAL_ENV JUPYTER_PATH JUPYTER_CONFIG_DIR JUPYTER_DATA_DIR || true
if command -v node >/dev/null 2>&1 || command -v npm >/dev/null 2>&1; then
    echo "node or npm is still on PATH=$PATH" >&2
    exit 1
fi
echo "PATH=$PATH; node: $(command -v node || echo none)"

if [ "$full" = 1 ]; then
    "$bin/pip" install -q -c "$here/constraints.txt" "$wheel" "jupyterlab>=4,<5"
else
    "$bin/pip" install -q --no-deps "$wheel"
    site="$("$bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    "$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' >"$site/zz-borrowed-dependencies.pth"
fi

cd "$work"
"$bin/python" -c 'import fednb, sys; assert fednb.__file__.startswith(sys.prefix), fednb.__file__; print("fednb", fednb.__version__, "from", fednb.__file__)'
# borrowed dependencies bring no console scripts: then run the same apps as modules
if [ -x "$bin/jupyter" ]; then
    labext=("$bin/jupyter" labextension) serverext=("$bin/jupyter" server extension)
else
    labext=("$bin/python" -m jupyterlab.labextensions) serverext=("$bin/python" -m jupyter_server.extension.serverextension)
fi
echo "== jupyter labextension list"
"${labext[@]}" list 2>&1
echo "== jupyter server extension list"
"${serverext[@]}" list 2>&1
