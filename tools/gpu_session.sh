#!/usr/bin/env bash
# One device-machine session: env, GPU tests, then the suites, each under a time limit so that a
# slow step cannot eat the call. Results go to results/<device slug>; logs and a tarball to $OUT.
#   bash tools/gpu_session.sh tests|model|kernels|gemm|profile [seconds]
# Learned on 2026-11-27: the GPU test set needs ~6-8 min of compile+autotune even with -n 14,
# so give `tests` a call of its own; the full model sweep (3 dtypes x 5 batches x 4 providers)
# needs more than one 10-minute call (torch.compile ~15-20 s per batch size): use --resume.
# The copied tree there has no .git: pass VITBENCH_GIT_COMMIT=$(git rev-parse HEAD) in the call so
# run metadata names the commit (commit first).
set -uo pipefail
# The device image lacks pydantic: wheels carried in .whl (see README "Running on the lent GPU").
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=.:/tmp/site PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
step=$1; budget=${2:-500}
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }
python3 -m vitbench env | tee -a "$OUT/env.txt"
case $step in
  tests)
    # Timer-vs-profiler checks alone first (no other process on the GPU), then the rest in parallel.
    timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_bench_gpu.py 2>&1 | tee "$OUT/gputests_bench.txt" | tail -15
    timeout "$(left)" python3 -m pytest -q -m gpu -n 14 -p no:cacheprovider tests --deselect tests/test_bench_gpu.py \
      -rfE --junitxml="$OUT/gputests.xml" 2>&1 | tee "$OUT/gputests.txt" | tail -40
    ;;
  model)
    timeout "$(left)" python3 -m vitbench model --batch 1,8,32,128,256 --dtype "${DTYPES:-bf16,fp16,fp32}" --resume --no-progress 2>&1 | tee -a "$OUT/model.log" | tail -80
    ;;
  kernels)
    timeout "$(left)" python3 -m vitbench kernels --op "${OPS:-all}" --providers "${PROVIDERS:-triton,torch}" --resume --no-progress 2>&1 | tee -a "$OUT/kernels.log" | tail -80
    ;;
  gemm)
    timeout "$(left)" python3 tools/gemm_ab.py 2>&1 | tee -a "$OUT/gemm_ab.txt" | tail -60
    ;;
  profile)
    for b in ${BATCHES:-1 256}; do
      timeout "$(left)" python3 -m vitbench profile --batch "$b" --out "$OUT/profile-b$b" 2>&1 | tee -a "$OUT/profile.txt" | tail -40
    done
    ;;
esac
tar czf "$OUT/results.tgz" results
