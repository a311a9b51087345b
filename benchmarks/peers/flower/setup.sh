#!/usr/bin/env bash
# Creates benchmarks/peers/flower/.venv: Python 3.11, Flower with its simulation
# extra (Ray) and the CPU build of PyTorch. Idempotent: a complete venv (marker
# file matching requirements.txt) is left alone.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
REQ="$HERE/requirements.txt"
MARKER="$VENV/.flower-peer-complete"
TORCH_PIN="torch==2.13.0"

req_hash() { sha256sum "$REQ" | cut -d' ' -f1; }

if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$(req_hash)" && -x "$VENV/bin/python" ]]; then
    echo "flower peer: $VENV is complete (requirements unchanged); nothing to do."
    exit 0
fi

PY=""
for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
        PY="$(command -v "$cand")"; break
    fi
done
if [[ -z "$PY" ]]; then
    echo "flower peer: no Python 3.11 found (tried python3.11, python3)" >&2
    exit 1
fi

start=$(date +%s)
if [[ -d "$VENV" ]]; then
    echo "flower peer: removing incomplete venv $VENV"
    rm -rf "$VENV"
fi
echo "flower peer: creating $VENV with $PY ($("$PY" --version 2>&1))"
"$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

echo "flower peer: installing $TORCH_PIN first (the local CPU wheel)"
"${PIP[@]}" install -q "$TORCH_PIN" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
"$VENV/bin/python" -W ignore -c 'import torch, sys; v = torch.__version__; print("  torch", v); sys.exit(0 if v.startswith("2.13.0") else 1)'

echo "flower peer: installing $REQ"
"${PIP[@]}" install -q -r "$REQ" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true

# Checks: every pin installed, torch still the CPU build, no CUDA wheels.
"$VENV/bin/python" - "$REQ" <<'PY'
import importlib.metadata as md, re, sys
bad = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, ver = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==(\S+)", line).groups()
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have is None or have.split("+")[0] != ver:
        bad.append(f"{name}: want {ver}, have {have}")
nvidia = sorted(d.metadata["Name"] for d in md.distributions()
                if d.metadata["Name"].lower().startswith("nvidia"))
if nvidia:
    bad.append("CUDA packages were installed: " + ", ".join(nvidia))
import torch
if "+cpu" not in torch.__version__:
    bad.append(f"torch is not the CPU build: {torch.__version__}")
import flwr, ray, numpy
print(f"  flwr {flwr.__version__}, ray {ray.__version__}, torch {torch.__version__}, numpy {numpy.__version__}")
if bad:
    print("flower peer: setup check failed:\n  " + "\n  ".join(bad), file=sys.stderr)
    sys.exit(1)
PY

req_hash > "$MARKER"
echo "flower peer: done in $(( $(date +%s) - start )) s; venv size $(du -sh "$VENV" | cut -f1)"
