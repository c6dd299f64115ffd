#!/usr/bin/env bash
# Replay what Binder (repo2docker) does with binder/, without Docker, and check the result:
#   1. a fresh virtual environment, binder/requirements.txt installed from the repository's root;
#   2. binder/postBuild, run once in the repository's root;
#   3. binder/start in the background, ending in JupyterLab, as at every Binder launch;
# then: the three workshop domains answer through the profile start saved; JupyterLab serves and
# opens on the tour, with the fednb panels' server extension seeing the workshop's domains; the tour
# notebook runs end to end in that environment; and `jupyter labextension list` shows fednb's extension.
#
# Where it differs from Binder, on purpose:
#   - the requirements' PyTorch index line is dropped and pip gets -c constraints.txt: the same
#     torch==2.13.0, as the CPU wheel on this project's machines (which reach PyPI, not PyTorch's index);
#   - $HOME is a temporary folder (Binder's is the repository itself), and the domains take free ports;
#   - pip's cache is kept (Binder builds without one) and pip does not byte-compile (.pyc files come
#     on first import instead), so a replay takes a minute or two, not several;
#   - as root (Binder's user is not), JupyterLab needs --allow-root.
#
#   scripts/binder_replay.sh [--keep]     (--keep: leave the temporary folder, to look inside)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/fednb-binder-XXXXXX")
keep=${1:-}
started=$SECONDS
server=""

say() { printf '[binder-replay %3ds] %s\n' $((SECONDS - started)) "$*"; }

cleanup() {
    if [ -n "$server" ]; then  # start's process group: JupyterLab and the domains, even if JupyterLab died
        kill -TERM -- "-$server" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 -- "-$server" 2>/dev/null || break; sleep 0.25; done
        kill -KILL -- "-$server" 2>/dev/null || true
    fi
    if [ "$keep" = "--keep" ]; then say "left $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

unset FEDNB_HOME  # as on Binder: the profile goes to ~/.fednb
home="$work/home"
mkdir -p "$home"

say "working in $work"
say "1/3 fresh virtual environment; pip install -r binder/requirements.txt (with constraints.txt)"
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
grep -v -e '--extra-index-url' -e '--index-url' "$repo/binder/requirements.txt" >"$work/requirements.txt"
(cd "$repo" && pip install -q --disable-pip-version-check --no-compile -c constraints.txt -r "$work/requirements.txt") \
    >"$work/pip.log" 2>&1 || { tail -n 40 "$work/pip.log"; exit 1; }
python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__; print('torch', torch.__version__)"

say "2/3 binder/postBuild"
(cd "$repo" && HOME="$home" ./binder/postBuild)

say "3/3 binder/start jupyter lab (in the background)"
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=$(python -c 'import secrets; print(secrets.token_hex(16))')
root_flag=()
[ "$(id -u)" = 0 ] && root_flag=(--allow-root)
(cd "$repo" && HOME="$home" FEDNB_WORKSHOP_PORT=0 exec setsid ./binder/start \
    jupyter lab --no-browser --ip 127.0.0.1 --port "$port" --IdentityProvider.token="$token" "${root_flag[@]}" \
    >"$work/start.log" 2>&1) &
server=$!
fail() { echo "$1"; echo "--- start.log"; tail -n 20 "$work/start.log"; exit 1; }

say "check: the domains answer (profile 'workshop' in \$HOME/.fednb)"
HOME="$home" python - <<'PY' || fail "the domains did not answer"
import time

import fednb

deadline = time.monotonic() + 120
while True:
    try:
        fed = fednb.connect(profile="workshop", min_domains=3)
        break
    except fednb.FednbError as exc:
        if time.monotonic() > deadline:
            raise SystemExit(f"the workshop's domains never answered: {exc}")
        time.sleep(0.5)
table = fed.datasets
print(table[["domain", "dataset", "rows"]].to_string(index=False))
assert set(table.domain) == {"hospital-a", "hospital-b", "ylb-uyuni"}, table
assert fed.dataset("patients").count().value == 2000
fed.close()
PY

say "check: JupyterLab serves, opens on the tour, and has the notebooks"
PORT=$port TOKEN=$token SERVER=$server python - <<'PY' || fail "JupyterLab check failed"
import os
import time
from urllib.parse import urlsplit

import httpx

base, token = f"http://127.0.0.1:{os.environ['PORT']}", os.environ["TOKEN"]
deadline = time.monotonic() + 120
while True:
    try:
        status = httpx.get(f"{base}/api/status", params={"token": token}, timeout=5)
        if status.status_code == 200:
            break
    except httpx.HTTPError:
        pass
    try:
        os.kill(int(os.environ["SERVER"]), 0)
    except ProcessLookupError:
        raise SystemExit("JupyterLab exited") from None
    if time.monotonic() > deadline:
        raise SystemExit("JupyterLab did not answer")
    time.sleep(0.5)
home = httpx.get(f"{base}/", params={"token": token}, follow_redirects=False, timeout=10)
opens = urlsplit(home.headers.get("location", "")).path
assert home.status_code in (301, 302) and opens == "/lab/tree/notebooks/en/01-analyst-tour.ipynb", (home.status_code, opens)
lab = httpx.get(f"{base}/lab/tree/notebooks/en/01-analyst-tour.ipynb", params={"token": token}, timeout=30)
assert lab.status_code == 200 and "JupyterLab" in lab.text, lab.status_code
for path in ("notebooks/en/01-analyst-tour.ipynb", "notebooks/es/01-recorrido-analista.ipynb"):
    nb = httpx.get(f"{base}/api/contents/{path}", params={"token": token, "content": 0}, timeout=10)
    assert nb.status_code == 200 and nb.json()["type"] == "notebook", (path, nb.status_code)
print(f"Jupyter server at {base}: / opens {opens}")
# the fednb server extension behind the panels: the analyst's domains and the owner's review queue
panel = httpx.get(f"{base}/fednb/api/analyst/domains", params={"token": token}, timeout=30)
assert panel.status_code == 200, (panel.status_code, panel.text[:300])
up = sorted(d["domain"] for d in panel.json() if d["up"])
review = httpx.get(f"{base}/fednb/api/owner/requests", params={"token": token}, timeout=30)
assert review.status_code == 200, (review.status_code, review.text[:300])
owned = sorted(d["domain"] for d in review.json()["domains"] if d.get("domain"))
print(f"fednb panels: analyst sees {up}; owner reviews {owned}")
assert up == owned == ["hospital-a", "hospital-b", "ylb-uyuni"], (up, owned)
PY

say "check: the tour notebook runs in this environment"
(cd "$work" && HOME="$home" PLOTLY_RENDERER=plotly_mimetype jupyter execute --timeout=300 \
    "$repo/notebooks/en/01-analyst-tour.ipynb" 2>&1 | grep -v 'without encryption' | tail -n 3)

say "check: the JupyterLab extension is installed and enabled"
extensions=$(jupyter labextension list 2>&1)
grep -E 'fednb-jupyterlab.*enabled' <<<"$extensions" || { echo "$extensions"; exit 1; }

say "OK: Binder replay passed"
