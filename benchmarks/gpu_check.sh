#!/usr/bin/env bash
# One call on a GPU machine: install what its image lacks, run the CUDA tests, time the
# update (eager, CUDA graph, the batch-shape and imagination knobs) and
# the whole training loop. GPU time comes in short windows, so everything is one script
# whose sections run even when an earlier one fails; logs go to $OUT (or /tmp/gpu-check).
#   bash benchmarks/gpu_check.sh            # wheels for missing packages in .whl/ are installed first
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" SDL_VIDEODRIVER=dummy MPLBACKEND=Agg
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
section() { echo; echo "=== $1 ($(date +%T))"; }
U="python3 benchmarks/bench_update.py --device cuda --threads 4 --peak 67000 --updates ${UPDATES:-20} --repeat 3"

section "CUDA tests"
timeout 240 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda.py tests/test_dreamer_model.py \
  tests/test_dreamer_maths.py tests/test_explore.py tests/test_trainer.py tests/test_optim.py 2>&1 | tail -8 \
  | tee "$OUT/tests.txt"

section "update: eager and CUDA graph"
{ $U --configs tiny small medium; $U --configs tiny small medium --graph; } 2>&1 | grep -v "^USDT" | tee "$OUT/update.txt"
section "update: the knobs, CUDA graph"
OFFICIAL="optim.name=laprop critic.repval_scale=0.3 model.init=official"
for knob in "train.batch_size=32 train.seq_len=32" "train.batch_size=64 train.seq_len=16" "actor.imag_fraction=0.25" \
            "model.compute_dtype=bfloat16" "train.batch_size=64" "train.batch_size=256" "$OFFICIAL"; do
  $U --configs small --graph $(for k in $knob; do echo --set "$k"; done) 2>&1 | grep "updates/s"
done | tee -a "$OUT/update.txt"

section "whole training loop"
timeout 300 python3 benchmarks/bench_train.py --device cuda --threads 4 --presets tiny,small,medium --steps 800 2>&1 \
  | tee "$OUT/loop.txt"
timeout 200 python3 benchmarks/bench_train.py --device cuda --threads 4 --presets small --steps 800 \
  $(for k in $OFFICIAL train.replay_context=true train.online=true; do echo --set "$k"; done) 2>&1 | tee -a "$OUT/loop.txt"

section "summary"
grep -h "updates/s" "$OUT/update.txt" | sed -E 's/^(.*) params +[0-9.]+M +([0-9.]+) updates\/s.*achieved +([0-9.]+) GFLOP\/s.*/\1: \2 updates\/s, \3 GFLOP\/s/'
cat "$OUT/loop.txt" | tail -5
