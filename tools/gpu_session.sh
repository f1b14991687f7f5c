#!/usr/bin/env bash
# One device-machine call, as parallel lanes: one lane per GPU, each a list of steps run in order,
# every step under `timeout` of what is left of the call's budget (a step cut short still writes
# its measured rows: the runners treat SIGTERM like Ctrl-C).
#
#   bash tools/gpu_session.sh BUDGET_S "GPU: step step ..." ["GPU: step ..."] ...
#
# Steps:
#   tests[:K/N]            the `gpu` pytest set (timer-vs-profiler checks first, alone), junit xml;
#                          tests:K/N only the K-th of N shards of its files (round-robin over the
#                          sorted list; the timer checks in shard 1), for one shard per lane
#   model:DTYPES[:FLAGS]   vitbench model, batches 1..256, every provider; fp32 runs ieee and tf32.
#                          FLAGS (joined by +): tma|pointer (VITBENCH_MATMUL), nocls (--no-cls-only),
#                          eager (VITBENCH_TUNE_GRAPH_BELOW_MS=0), pdl (VITBENCH_PDL=1),
#                          warm (VITBENCH_TUNE_COLD=0), nosplitk (VITBENCH_SPLIT_K=0),
#                          lnfold (VITBENCH_LN_FOLD=1), nofold (=0), attnpad (VITBENCH_ATTN_TAIL=0),
#                          no2pass (VITBENCH_TWO_PASS=0), fitgelu / fastgelu (VITBENCH_FAST_GELU=0 / 1),
#                          b=1.8 (batches, '.'-separated), p=bf16x6.tf32x3 (fp32 precisions;
#                          default ieee.tf32);
#                          with flags: providers triton + hf-sdpa (env MODEL_PROVIDERS: others)
#   kernels:OP+OP[@vit]    vitbench kernels --op OP,OP --providers triton,torch (@vit: the ops' cases
#                          of configs/kernels/vit.yaml, i.e. --config configs/kernels/vit.yaml;
#                          env KERNEL_DTYPE=fp32, KERNEL_PRECISION=bf16x6.tf32x3: --dtype, --precision)
#   gemm                   tools/gemm_ab.py (default vs TMA GEMM vs cuBLAS vs unfused torch)
#   epi:GEMM+GEMM[:B.B]    tools/epilogue_probe.py: each TMA config forced, per epilogue, batches B
#                          (:rM.M instead: GEMMs of M rows, e.g. :r5632.672, a row split's halves)
#                          (env EPILOGUES="gelu residual": only those epilogues; env PROBE_ARGS:
#                          more arguments, e.g. "--stagger 2000 4000 --per-sm 2")
#   fp32:PREC+PREC[:B.B]  tools/fp32_probe.py: those fp32 precision modes on the ViT-B/16 GEMMs and
#                          attention at batches B (default 32) against cuBLAS (env FP32_OPS: "fc1 attn")
#   set:NAME=VALUE         export NAME=VALUE for the lane's later steps (',' in VALUE -> ' ';
#                          VALUE cannot hold ':' or a space)
#   profile:B+B            vitbench profile at each batch (env PROFILE_ARGS: more arguments, e.g.
#                          set:PROFILE_ARGS=--dtype,fp32)
#   gelu                   tools/gelu_probe.py: each GELU form's error against float64
#   rows[:DTYPE]           tools/row_probe.py: layernorm and softmax at ViT-B/16 batch 256 per row-tile
#                          size, as shares of the copy bandwidth (default bf16)
#   gluon                  tools/gluon_probe.py: the Gluon GEMM's configs checked, then timed
#   energy[:B]             tools/energy_probe.py: FC2 with and without the residual, energy (NVML)
#                          and time per launch, SM clocks and power-cap share (batch B, default 256)
#                          (env PROBE_ARGS: more arguments, e.g. "--only gluon --gap-ms 50")
#   fma[:B.B]              tools/fma_gemm_probe.py: the Gluon CUDA-core fp32 GEMM checked, then timed
#                          against cuBLAS fp32 and vitbench's ieee GEMM (batches B, default 32;
#                          env PROBE_ARGS: more arguments, e.g. set:PROBE_ARGS=--split)
#   fmaattn[:B.B]          tools/fma_attention_probe.py: a Gluon CUDA-core fp32 flash attention checked,
#                          then timed against SDPA fp32 and vitbench's attention (batches B, default 32.256)
# Each step writes to results/_scratch/gpu/<step>-gpu<N> (git-ignored, kept while the machine stays warm,
# so --resume continues there in the next call); logs per lane, and logs/smi.csv: every GPU's clocks,
# power, temperature and throttle reasons each second. At the end results/_scratch/gpu
# and the logs go to $OUT/results.tgz.
#
# Example (4 GPUs):
#   VITBENCH_GIT_COMMIT=<full hash of your checkout's HEAD> bash tools/gpu_session.sh 570 \
#     "0: gemm profile:1+256" "1: model:bf16" "2: model:fp32" "3: tests"
# Learned on 2026-11-27: the GPU test set needs ~6-8 min of compile+autotune with -n 14; a model
# sweep of one dtype (5 batches x 4 providers) ~4-5 min (torch.compile ~15-20 s per batch size).
# 2026-11-28 (H200 host, cold caches): a 16-bit sweep's batches 1 and 8 took ~9 min beside a lane of
# 6 test workers (the first forward per batch times every GEMM candidate), batches 32-256 5.5 min;
# fp32 ieee batches 1-8 ~8 min with 4 providers. Split long sweeps with b=... over lanes.
# Pass VITBENCH_GIT_COMMIT=<hash> so run metadata names the commit (commit first), with the hash
# written into the command text: a $(git rev-parse HEAD) inside the command runs on the device,
# whose copy may carry a .git of an older commit under the newer tree (2026-11-27: it said 9b926aa
# for runs of 7f29dde and 36e033f). That case is caught below and marked "+modified".
set -uo pipefail
if head=$(git rev-parse HEAD 2>/dev/null) && [ "${VITBENCH_GIT_COMMIT:-}" = "$head" ] \
    && ! git diff --quiet HEAD 2>/dev/null; then
  echo "WARNING: VITBENCH_GIT_COMMIT is this copy's git HEAD, but the tree differs from it;" \
    "pass the hash from your checkout. Recorded as $head+modified." >&2
  export VITBENCH_GIT_COMMIT="$head+modified"
fi
# The device image lacks pydantic and plotly: wheels carried in .whl (git-ignored; fetched with
# `pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64
# -d .whl pydantic pydantic-core annotated-types typing-inspection plotly`, pinned to one version each).
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=.:/tmp/site PYTHONUNBUFFERED=1 COLUMNS=160
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
RES=results/_scratch/gpu; LOGS=$RES/logs; mkdir -p "$LOGS"
budget=$1; shift
deadline=$(( $(date +%s) + budget ))
left() { echo $(( deadline - $(date +%s) )); }
# a timeout within what is left (at least 1 s: `timeout 0` would mean no limit at all)
# (env STEP_LIMIT, e.g. set:STEP_LIMIT=300: at most that, for steps that may hang on a new kernel)
lim() {
  local l x; l=$(left); x=${1:-$l}; (( x > l )) && x=$l
  [ -n "${STEP_LIMIT:-}" ] && (( x > STEP_LIMIT )) && x=$STEP_LIMIT
  (( x < 1 )) && x=1; echo "$x"
}
python3 -m vitbench env | tee -a "$LOGS/env.txt"
nvidia-smi --query-gpu=index,name,memory.used,utilization.gpu --format=csv | tee -a "$LOGS/env.txt"

step() {  # step NAME: run one step on the lane's GPU (CUDA_VISIBLE_DEVICES set by the lane)
  local s=$1 t; t=$(left)
  [ "$t" -gt 20 ] || { echo "skip $s: out of time"; return; }
  IFS=: read -r kind arg flag <<<"$s"
  # one directory per step and GPU: two lanes running the same step text (e.g. an A/B whose lanes
  # differ only by a set:) would otherwise resume each other's run (2026-11-28: lane 0's A/B
  # baseline refused to resume lane 1's run made under another setting)
  local dir="$RES/$(echo "$s" | tr ':+@/,' '-----')-gpu${CUDA_VISIBLE_DEVICES:-0}"; mkdir -p "$dir"
  echo "=== $(date -u +%T) GPU $CUDA_VISIBLE_DEVICES: $s (${t}s left)"
  case $kind in
    tests)  # env TEST_FILES: only those files (default: the timer checks, then every file with gpu tests)
      local shard=${arg:-1/1} files
      # lanes running `tests` on different TEST_FILES write apart (named after the first file)
      [ -z "${TEST_FILES:-}" ] || { dir="$dir-$(basename "${TEST_FILES%% *}" .py)"; mkdir -p "$dir"; }
      files=${TEST_FILES:-$(grep -l "mark.gpu" tests/test_*.py | grep -v test_bench_gpu.py | sort \
        | awk -v k="${shard%/*}" -v n="${shard#*/}" '(NR - 1) % n == k - 1')}
      [ -n "${TEST_FILES:-}" ] || [ "${shard%/*}" != 1 ] || timeout "$(lim 150)" python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_bench_gpu.py -rfE \
        --junitxml="$dir/gputests_bench.xml" 2>&1 | tail -15
      # only the files that hold gpu tests (the others import plotly/selenium, absent there)
      # VITBENCH_MATMUL=pointer: the auto GEMM choice times both kernels at every new shape, which
      # made the set twice as slow; the TMA kernel and the auto choice have their own gpu tests.
      # SIGINT when time runs out: pytest then stops, names the failures so far (-rfE) and still
      # writes the junit xml (with SIGTERM, on 2026-11-27, 4 failures went unnamed)
      VITBENCH_MATMUL=pointer timeout -s INT -k 30 "$(lim)" python3 -m pytest -q -m gpu -n "${TEST_WORKERS:-16}" -p no:cacheprovider \
        $files \
        -rfE --junitxml="$dir/gputests.xml" 2>&1 | tail -60 ;;
    model)  # model:DTYPES[:FLAG+FLAG]  flags: tma|pointer, nocls, eager, pdl, warm, nosplitk, lnfold, nofold, attnpad, no2pass, fitgelu, fastgelu, b=1.8
      local extra=() mm="" tune="" pdl="" cold="" splitk="" lnfold="" attnpad="" twopass="" fastgelu="" batches=1,8,32,128,256
      local precs=ieee,tf32
      for f in ${flag//+/ }; do
        case $f in
          p=*) precs=${f#p=}; precs=${precs//./,} ;;  # fp32 precisions, '.'-separated
          tma|pointer) mm=$f ;;
          nocls) extra+=(--no-cls-only) ;;
          eager) tune=0 ;;  # autotuning timed eagerly only (VITBENCH_TUNE_GRAPH_BELOW_MS=0)
          pdl) pdl=1 ;;  # programmatic dependent launch (VITBENCH_PDL=1)
          warm) cold=0 ;;  # small configs autotuned without the L2 flush (VITBENCH_TUNE_COLD=0)
          nosplitk) splitk=0 ;;  # split-K configs not autotuned (VITBENCH_SPLIT_K=0)
          lnfold) lnfold=1 ;;  # layernorms folded into the GEMMs (VITBENCH_LN_FOLD=1)
          nofold) lnfold=0 ;;  # never folded (VITBENCH_LN_FOLD=0; the default folds at batch 1-2)
          attnpad) attnpad=1 ;;  # attention's ragged ends padded to full blocks (VITBENCH_ATTN_TAIL=0)
          no2pass) twopass=0 ;;  # row splits' rests never as a two-pass split-K (VITBENCH_TWO_PASS=0)
          fitgelu) fastgelu=0 ;;  # 16-bit GELU epilogues: exp2 + division (VITBENCH_FAST_GELU=0)
          fastgelu) fastgelu=1 ;;  # one hardware tanh (the default)
          b=*) batches=${f#b=} ;;
        esac
      done
      [[ $arg == *fp32* ]] && extra+=(--precision "$precs")
      # a flagged run is an A/B against the default: the triton row and the HF SDPA baseline only
      # (env MODEL_PROVIDERS overrides that: set:MODEL_PROVIDERS=triton,hf-eager,... whose commas
      # set: turns into spaces, turned back here)
      local providers=${MODEL_PROVIDERS:-triton,hf-sdpa}
      [ -n "$flag" ] && extra+=(--providers "${providers// /,}")
      env ${mm:+VITBENCH_MATMUL=$mm} ${tune:+VITBENCH_TUNE_GRAPH_BELOW_MS=$tune} ${pdl:+VITBENCH_PDL=1} ${cold:+VITBENCH_TUNE_COLD=$cold} ${splitk:+VITBENCH_SPLIT_K=$splitk} ${lnfold:+VITBENCH_LN_FOLD=$lnfold} ${attnpad:+VITBENCH_ATTN_TAIL=0} ${twopass:+VITBENCH_TWO_PASS=$twopass} ${fastgelu:+VITBENCH_FAST_GELU=$fastgelu} timeout "$t" python3 -m vitbench model --batch "${batches//./,}" --dtype "$arg" \
        --out "$dir" --resume --no-progress "${extra[@]}" 2>&1 | tail -40 ;;
    kernels)  # kernels:OP+OP (shipped sweeps) or kernels:OP+OP@vit (those ops of configs/kernels/vit.yaml)
      local cfg=()
      [[ $arg == *@* ]] && cfg=(--config "configs/kernels/${arg#*@}.yaml")
      timeout "$t" python3 -m vitbench kernels --op "$(echo "${arg%@*}" | tr + ,)" "${cfg[@]}" \
        --providers "${PROVIDERS:-triton,torch}" ${KERNEL_DTYPE:+--dtype ${KERNEL_DTYPE//./,}} \
        ${KERNEL_PRECISION:+--precision ${KERNEL_PRECISION//./,}} --out "$dir" --resume --no-progress 2>&1 | tail -60 ;;
    epi)  # epi:GEMM+GEMM[:B.B]  tools/epilogue_probe.py: every TMA config forced, per epilogue
      local sizes="--batch $(echo "${flag:-256}" | tr . " ")"
      [[ $flag == r* ]] && sizes="--rows $(echo "${flag#r}" | tr . " ")"
      timeout "$(lim)" python3 tools/epilogue_probe.py --gemm ${arg//+/ } $sizes \
        ${EPILOGUES:+--epilogue $EPILOGUES} ${PROBE_ARGS:-} 2>&1 | tee "$dir/probe.txt" | sed "s/^/[epi] /" ;;
    fp32)  # fp32:PREC+PREC[:B.B]
      timeout "$(lim)" python3 tools/fp32_probe.py --precision ${arg//+/ } --batch $(echo "${flag:-32}" | tr . " ") \
        ${FP32_OPS:+--gemm $FP32_OPS} 2>&1 | tee "$dir/probe.txt" | sed "s/^/[fp32] /" ;;
    gemm)
      timeout "$t" python3 tools/gemm_ab.py 2>&1 | tail -40 ;;
    gluon)
      timeout "$(lim)" python3 tools/gluon_probe.py 2>&1 | tee "$dir/probe.txt" | sed "s/^/[gluon] /" ;;
    energy)
      timeout "$(lim)" python3 tools/energy_probe.py --batch "${arg:-256}" ${PROBE_ARGS:-} 2>&1 | tee "$dir/probe.txt" | sed "s/^/[energy] /" ;;
    fma)
      timeout "$(lim)" python3 tools/fma_gemm_probe.py --batch $(echo "${arg:-32}" | tr . " ") ${PROBE_ARGS:-} 2>&1 \
        | tee "$dir/probe.txt" | sed "s/^/[fma] /" ;;
    fmaattn)
      timeout "$(lim)" python3 tools/fma_attention_probe.py --batch $(echo "${arg:-32.256}" | tr . " ") 2>&1 \
        | tee "$dir/probe.txt" | sed "s/^/[fmaattn] /" ;;
    gelu)
      timeout "$(lim)" python3 tools/gelu_probe.py 2>&1 | tee "$dir/probe.txt" | sed "s/^/[gelu] /" ;;
    rows)  # rows[:DTYPE]  tools/row_probe.py: layernorm / softmax per row-tile size vs copy bandwidth
      timeout "$(lim)" python3 tools/row_probe.py --dtype "${arg:-bf16}" 2>&1 | tee "$dir/probe.txt" | sed "s/^/[rows] /" ;;
    profile)
      for b in ${arg//+/ }; do
        timeout "$(lim)" python3 -m vitbench profile --batch "$b" ${PROFILE_ARGS:-} --out "$dir" 2>&1 | head -45
      done ;;
    set) local n=${arg%%=*}; export "$n=$(echo "${arg#*=}" | tr , ' ')"; echo "set $n=${!n}" ;;
    *) echo "unknown step $s" ;;
  esac
}

lane() {  # lane "GPU: step step ..."
  local gpu=${1%%:*} steps=${1#*:}
  (
    export CUDA_VISIBLE_DEVICES=$gpu
    for s in $steps; do step "$s"; done
  ) >"$LOGS/lane$gpu.log" 2>&1
}

pack() {  # what is measured so far -> $OUT/results.tgz (written aside, then renamed: never half)
  # tar exits 1 when a file grew while read (logs/smi.csv always does): the archive is still whole
  local rc=0
  tar czf "$OUT/.results.tgz.part" --warning=no-file-changed "$RES" 2>/dev/null || rc=$?
  (( rc <= 1 )) && mv -f "$OUT/.results.tgz.part" "$OUT/results.tgz"
}
# Clocks, power, temperature and throttle reasons of every GPU every second (logs/smi.csv;
# reasons 0x4: software power cap): on 2026-11-27 a batch-256 forward took 17.7 ms in one call and
# 16.4 ms six minutes later on the same host, with the power cap in samples of both.
# Killed on exit, also when the call's time limit kills this script.
nvidia-smi --query-gpu=timestamp,index,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active \
  --format=csv -lms 1000 >>"$LOGS/smi.csv" 2>/dev/null &
smi=$!
trap 'kill "$smi" 2>/dev/null' EXIT
trap 'exit 143' TERM INT  # so that the EXIT trap runs when the script is killed
lanes=()
for spec in "$@"; do lane "$spec" & lanes+=($!); done
running() { local p; for p in "${lanes[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
# Pack every 30 s while the lanes run, not only at the end: on 2026-11-27 a call whose BUDGET_S
# exceeded the device call's limit was killed before the end and brought nothing back. Keep
# BUDGET_S at least 60 s under the call's limit_s (which shrinks as the session's device time runs out).
while running; do sleep 30; pack; done
(( ${#lanes[@]} )) && wait "${lanes[@]}"  # not a bare `wait`: it would wait for the sampler too
kill "$smi" 2>/dev/null
for f in "$LOGS"/lane*.log; do echo "##### $f"; tail -c 2500 "$f"; done
pack
