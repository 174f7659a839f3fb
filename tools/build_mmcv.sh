#!/usr/bin/env bash
# Builds mmcv 2.1.0 (with ops) from its sdist into the given Python's environment.
# ~35 min on 2 cores. Needs setuptools>=77.0.3,<82 (installed by tools/setup.sh).
# CUDA ops are built only when nvcc is present and the installed torch sees a GPU
# (set MMPATCH_MMCV_CUDA=1 to force them, MMPATCH_MMCV_CUDA=0 to skip them).
set -euo pipefail
PYBIN=${1:?usage: build_mmcv.sh PYTHON}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PYBIN" -m pip download -q --no-deps --no-binary :all: -d "$work" mmcv==2.1.0
tar -xzf "$work"/mmcv-2.1.0.tar.gz -C "$work"
src="$work/mmcv-2.1.0"

# torch >= 2.10 headers need C++20; mmcv 2.1.0's setup.py hard-codes C++17.
std=$("$PYBIN" -c 'import torch; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); print("c++20" if v >= (2, 10) else "c++17")')
sed -i "s/-std=c++17/-std=$std/g" "$src/setup.py"

cuda=${MMPATCH_MMCV_CUDA:-auto}
if [[ "$cuda" == auto ]]; then
  cuda=0
  if command -v nvcc >/dev/null && "$PYBIN" -c 'import torch, sys; sys.exit(not (torch.version.cuda and torch.cuda.is_available()))'; then
    cuda=1
  fi
fi
export MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
[[ "$cuda" == 1 ]] && export FORCE_CUDA=1
echo "build_mmcv: building mmcv 2.1.0 (-std=$std, CUDA ops: $cuda, $MAX_JOBS jobs); this takes ~35 min on 2 cores"
"$PYBIN" -m pip install --no-build-isolation --no-deps "$src"
