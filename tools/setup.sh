#!/usr/bin/env bash
# One-command setup: creates .venv/ if missing and installs the pinned stack + mmpatch.
# Idempotent: a second run with unchanged requirements only checks a stamp (seconds).
#
#   MMPATCH_WHEELHOUSE=../shared/wheels bash tools/setup.sh   # mmcv from a wheel (~3 min)
#   bash tools/setup.sh                                       # mmcv from the sdist (~35 min on 2 cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${MMPATCH_PYTHON:-python3.11}
VENV=.venv
# torch is pinned on every pip call that resolves packages, so pip never swaps it.
PINS=(torch==2.14.1 torchvision==0.29.1 "setuptools>=77.0.3,<82")

die() { echo "setup: error: $*" >&2; exit 1; }

WHEELHOUSE=${MMPATCH_WHEELHOUSE:-}
if [[ -n "$WHEELHOUSE" ]]; then
  [[ -d "$WHEELHOUSE" ]] || die "MMPATCH_WHEELHOUSE='$WHEELHOUSE' is not a directory; unset it to build mmcv from source"
  WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
fi

stamp_of() { cat requirements/*.txt setup.py tools/setup.sh | sha1sum | cut -d' ' -f1; }
STAMP="$VENV/.mmpatch-setup-stamp"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_of)" ]] && "$VENV/bin/python" -c 'import mmcv.ops, mmseg, mmdet, mmpatch' 2>/dev/null; then
  echo "setup: .venv is up to date"
  exit 0
fi

command -v "$PY" >/dev/null || die "$PY not found; set MMPATCH_PYTHON to a Python 3.11 interpreter"
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
FIND=()
[[ -n "$WHEELHOUSE" ]] && FIND=(--find-links "$WHEELHOUSE")

t0=$SECONDS
"${PIP[@]}" -q "${FIND[@]}" "${PINS[@]}" wheel -r requirements/runtime.txt -r requirements/tests.txt 2>&1 \
  | { grep -v "is ignored: it is neither a file nor a directory" || true; }

mmcv_ok() { "$VENV/bin/python" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; }
if ! mmcv_ok; then
  if [[ -n "$WHEELHOUSE" ]] && ls "$WHEELHOUSE"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    "${PIP[@]}" -q --no-index --no-deps --find-links "$WHEELHOUSE" --force-reinstall mmcv==2.1.0 \
      || die "could not install mmcv 2.1.0 from $WHEELHOUSE (the wheel must match Python 3.11 + torch 2.14.1)"
  else
    [[ -n "$WHEELHOUSE" ]] && echo "setup: no mmcv-2.1.0 wheel in $WHEELHOUSE; building from source" >&2
    bash tools/build_mmcv.sh "$VENV/bin/python" \
      || die "mmcv build failed (log above); pass MMPATCH_WHEELHOUSE=<dir with mmcv-2.1.0 wheel> to skip the build"
  fi
fi
mmcv_ok || die "mmcv 2.1.0 with ops does not import in $VENV"

"${PIP[@]}" -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c 'import torch, mmcv.ops, mmseg, mmdet, timm, mmpatch; print(f"setup: torch {torch.__version__}, mmcv {mmcv.__version__}, mmseg {mmseg.__version__}, mmdet {mmdet.__version__}, timm {timm.__version__}")'
stamp_of > "$STAMP"
echo "setup: done in $((SECONDS - t0)) s"
