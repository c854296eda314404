#!/usr/bin/env bash
# The paper path at its real sizes on a CUDA machine: DiT-XL/2 fine-tuning steps/s, sampling images/s
# and the test networks' training images/s at 224 px, in bf16, each next to its FLOP limit on the GPU's
# peak (benchmarks/cost.py's counts) as a ratio. Random weights, nothing downloaded.
#   benchmarks/gpu.sh                 # full length: 50 fine-tuning steps, 16 images x 50 sampling steps, 20 batches
#   benchmarks/gpu.sh --short         # one step of each (also on the CPU, in fp32: what the tests run)
#   benchmarks/gpu.sh --json out.json # and the numbers as JSON (any other flag goes to fullsize.py too)
# Python: $PYTHON, else the repository's .venv (make install), else python3.
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname -- "$here")
default_python=python3
[ -x "$root/.venv/bin/python" ] && default_python="$root/.venv/bin/python"  # make install's environment
python=${PYTHON:-$default_python}
if "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    device=(--device cuda --precision bf16)
else
    echo "gpu.sh: no CUDA device: running on the CPU in fp32" >&2
    device=(--device cpu)
fi
length=(--finetune-steps 50 --sample-steps 50 --images 16 --eval-steps 20)
args=()
for a in "$@"; do
    if [ "$a" = --short ]; then
        length=(--finetune-steps 1 --sample-steps 2 --images 2 --eval-steps 1 --eval-batch 8)
    else
        args+=("$a")
    fi
done
exec "$python" "$here/fullsize.py" "${device[@]}" "${length[@]}" "${args[@]}"
