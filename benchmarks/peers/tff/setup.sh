#!/usr/bin/env bash
# Creates benchmarks/peers/tff/.venv: Python 3.10 + TensorFlow Federated 0.87.0.
#
#   bash benchmarks/peers/tff/setup.sh          # from anywhere; idempotent
#   FORCE=1 bash benchmarks/peers/tff/setup.sh  # rebuild the venv from scratch
#
# Steps: find a Python 3.10 (TFF 0.87 needs >=3.9,<3.12; we use 3.10), create the venv,
# `pip install --no-deps tensorflow-federated==0.87.0`, then install TFF's own requirements as
# the wheel's metadata lists them (importlib.metadata), except its pinned `jax==0.4.14` /
# `jaxlib==0.4.14`: jaxlib 0.4.14 is not on PyPI, so we install jax==0.4.13 jaxlib==0.4.13.
# Every package is pinned to the exact version known to work by requirements.txt (used as a pip
# constraints file). A complete venv (marker file + import check) is left alone.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
MARKER="$VENV/.tff-setup-complete"
CONSTRAINTS="$HERE/requirements.txt"
TFF_VERSION="0.87.0"
JAX_OVERRIDE=("jax==0.4.13" "jaxlib==0.4.13")

log() { echo "[tff setup] $*"; }
t0=$SECONDS

# ---- 1. a complete venv: nothing to do --------------------------------------------------
if [[ "${FORCE:-0}" != "1" && -f "$MARKER" && -x "$VENV/bin/python" ]] &&
   "$VENV/bin/python" -c "import tensorflow_federated" >/dev/null 2>&1; then
  log "complete venv found at $VENV ($(cat "$MARKER")); nothing to do (FORCE=1 rebuilds)"
  exit 0
fi

# ---- 2. find Python 3.10 ----------------------------------------------------------------
is_py310() {
  [[ -n "$1" && -x "$1" ]] &&
    "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1
}
PY=""
if cand="$(command -v python3.10 2>/dev/null)" && is_py310 "$cand"; then
  PY="$cand"
else
  for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10*/bin/python3.10; do
    if is_py310 "$cand"; then PY="$cand"; fi   # last match = highest 3.10.x (glob order)
  done
fi
if [[ -z "$PY" ]]; then
  echo "[tff setup] ERROR: TensorFlow Federated $TFF_VERSION needs a Python 3.10 interpreter" >&2
  echo "[tff setup]        (TFF 0.87 supports >=3.9,<3.12; this setup pins 3.10)." >&2
  echo "[tff setup]        Looked for 'python3.10' on PATH and" \
       "\${PYENV_ROOT:-~/.pyenv}/versions/3.10*/bin/python3.10; found none that runs." >&2
  echo "[tff setup]        Install one (e.g. 'pyenv install 3.10.13') and re-run." >&2
  exit 1
fi
# Resolve pyenv shims to the real interpreter, so the venv does not depend on the shim.
PY="$("$PY" -c 'import sys; print(sys.executable)')"
log "using $PY ($("$PY" -c 'import platform; print(platform.python_version())'))"

# ---- 3. (re)create the venv -------------------------------------------------------------
if [[ -e "$VENV" ]]; then
  log "removing incomplete (or FORCE=1) venv at $VENV"
  rm -rf "$VENV"
fi
"$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check --no-input)
log "created venv $VENV"

# ---- 4. TFF itself, without its dependencies --------------------------------------------
log "pip install --no-deps tensorflow-federated==$TFF_VERSION"
"${PIP[@]}" install --no-deps "tensorflow-federated==$TFF_VERSION"

# ---- 5. TFF's own requirements, read from the installed wheel's metadata -----------------
mapfile -t REQS < <("$VPY" - <<'EOF'
import importlib.metadata as md
import re
for req in md.requires("tensorflow-federated") or []:
    if ";" in req and "extra" in req.split(";", 1)[1]:
        continue  # optional extras
    name = re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower()
    if name in ("jax", "jaxlib"):
        continue  # replaced below: jaxlib==0.4.14 is not on PyPI
    print(req.replace(" ", ""))
EOF
)
REQS+=("${JAX_OVERRIDE[@]}")
log "TFF $TFF_VERSION requirements (jax/jaxlib 0.4.14 -> 0.4.13): ${REQS[*]}"
CONSTRAINT_ARGS=()
if [[ -f "$CONSTRAINTS" ]]; then
  CONSTRAINT_ARGS=(-c "$CONSTRAINTS")
  log "pinning exact versions with constraints $CONSTRAINTS"
fi
"${PIP[@]}" install "${CONSTRAINT_ARGS[@]}" "${REQS[@]}"

# ---- 6. check ---------------------------------------------------------------------------
log "pip check (a complaint about jax/jaxlib 0.4.14 is expected):"
"${PIP[@]}" check || true
TF_CPP_MIN_LOG_LEVEL=2 "$VPY" - <<'EOF'
import sys, jax, numpy, tensorflow as tf, tensorflow_federated as tff
print(f"[tff setup] import ok: python {sys.version.split()[0]}, tensorflow {tf.__version__}, "
      f"tensorflow_federated {tff.__version__}, jax {jax.__version__}, numpy {numpy.__version__}")
EOF
echo "tensorflow-federated==$TFF_VERSION, $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$MARKER"
log "done in $((SECONDS - t0)) s; venv size $(du -sh "$VENV" | cut -f1)"
