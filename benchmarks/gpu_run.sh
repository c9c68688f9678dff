#!/usr/bin/env bash
# One run on a lent GPU machine (docs/model_status.md, "On a lent GPU"), in this order:
#   1. the CUDA tests (projector, FDK, SART, inference: -k "cuda or gpu or input_device");
#   2. bench_inference (bundled model, 128^3 and 256^3, with the card's DC) and bench_projector on CUDA;
#   3. a bounded training run warm-started from the bundled model (GPU_CONFIG=bundled, default), grown
#      from it into a wider architecture (GPU_CONFIG=FILE.json: the tensors whose name and shape match are
#      copied, the rest start fresh) or the paper's width from scratch (GPU_CONFIG=paper), on phantoms made
#      there plus the real CTs carried in .gpu_data/, cosine-decayed to fit TRAIN_MINUTES;
#   4. everything back under $OUT (at most 8 files of 16 MiB): summary.txt, the logs, the model in
#      float16 with its run card (model.safetensors), the training log (log.jsonl).
# From this machine (the device tool; the machine has no network, so SimpleITK and nibabel travel
# as wheels, see the docs):
#   run(command="TRAIN_MINUTES=8 bash benchmarks/gpu_run.sh", carry=[".whl", ".gpu_data"], timeout_s=590)
# Knobs (environment; a bad one is refused in one line before anything runs): TRAIN_MINUTES (default 5),
# BUDGET_S (the whole run, default 570), BATCH (8),
# GPU_CONFIG (bundled | paper | FILE.json), INIT (the model to warm-start, default the bundled file), LR (2e-4),
# TRAIN_STEPS (the cosine horizon; default fitted from a probe's step time), SKIP_CHECKS=1 (training only:
# a second call on the same lease, the tests and benchmarks already back).
# Here, as a check of the script itself (CPU, tiny, about 2 minutes): DRY=1 bash benchmarks/gpu_run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
DRY=${DRY:-0}
TRAIN_MINUTES=${TRAIN_MINUTES:-5}
GPU_CONFIG=${GPU_CONFIG:-bundled}
BATCH=${BATCH:-8}
WORK=${WORK:-/tmp/deepsparse_gpu}
BUNDLED=deepsparse_core/models/dice_6-10views.safetensors
BUDGET_S=${BUDGET_S:-570}          # the whole run, inside the device call's 590 s
mkdir -p "$OUT" "$WORK"
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/summary.txt"; }
# bad knobs are refused before anything runs: a typo must not cost the lease's minutes
for knob in TRAIN_MINUTES BATCH BUDGET_S ${TRAIN_STEPS:+TRAIN_STEPS}; do
  [[ "${!knob}" =~ ^[1-9][0-9]*$ ]] || { note "error: $knob must be a whole number >= 1, got '${!knob}'"; exit 2; }
done
[ -z "${INIT:-}" ] || [ -f "$INIT" ] || { note "error: INIT=$INIT: no such model file"; exit 2; }
case "$GPU_CONFIG" in
  paper) MODEL=(--config paper) ;;
  bundled) MODEL=(--init "${INIT:-$BUNDLED}") ;;
  *.json) [ -f "$GPU_CONFIG" ] || { note "error: GPU_CONFIG=$GPU_CONFIG: no such file"; exit 2; }
          MODEL=(--init "${INIT:-$BUNDLED}" --config "$GPU_CONFIG") ;;
  *) note "error: GPU_CONFIG must be bundled, paper or a .json architecture file, got '$GPU_CONFIG'"; exit 2 ;;
esac
DEADLINE=$((SECONDS + BUDGET_S))
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "error: installing the carried wheels failed" | tee -a "$OUT/summary.txt"; exit 1; }
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
step() {  # step NAME TIMEOUT_S COMMAND...: its output added to $OUT/NAME.log, its status to summary.txt
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS left=$((DEADLINE - SECONDS - 60))   # 60 s kept for the model's export
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -le 0 ]; then note "$name: skipped, no time left"; return 1; fi
  timeout "$limit" "$@" >>"$OUT/$name.log" 2>&1
  local rc=$?
  note "$name: exit $rc after $((SECONDS - t0)) s"
  return $rc
}

if [ "$DRY" = 1 ]; then
  DEVICE=cpu; TRAIN_MINUTES=2; BATCH=1; N_PHANTOMS=1; AUGMENT=0; PROBE=40; SIZES="64"
else
  DEVICE=cuda; N_PHANTOMS=8; AUGMENT=20; PROBE=200; SIZES="128 256"
fi
note "gpu_run: DRY=$DRY device=$DEVICE config=$GPU_CONFIG train=${TRAIN_MINUTES} min batch=$BATCH"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>&1 | tee -a "$OUT/summary.txt"

# 1-2. CUDA tests and benchmarks (on the CPU they skip or time the CPU: a check of the script)
if [ "${SKIP_CHECKS:-0}" != 1 ]; then   # SKIP_CHECKS=1: training only (a second run on the same lease)
step tests 180 python3 -m pytest -q -p no:cacheprovider -k "cuda or gpu or input_device" Testing/test_projector.py \
  Testing/test_fdk.py Testing/test_sart.py Testing/test_inference.py
step bench_inference 150 python3 benchmarks/bench_inference.py --model "$BUNDLED" --sizes $SIZES \
  --devices $DEVICE --data-consistency 16
[ "$DRY" = 1 ] || step bench_projector 90 python3 benchmarks/bench_projector.py --views 10 --size 256 --detector 256
fi

# 3. training data: phantoms made here, real CTs carried in .gpu_data/ (any CT format the engine reads).
# The label-driven phantoms need the chest sample, which that machine (no network) does not have.
KINDS="head pelvis knee chest shepp_logan"
[ "$DRY" = 1 ] && KINDS=chest
step data 240 bash -c "
  set -e
  python3 -m deepsparse_core --progress none phantoms --count $N_PHANTOMS --out $WORK/phantoms --kinds $KINDS
  python3 -m deepsparse_core --progress none prepare $WORK/phantoms --out $WORK/synth --candidates 120 \
    --splits 1 0 0 --augment $([ "$DRY" = 1 ] && echo 0 || echo 1) --workers 8 --device $DEVICE
  if compgen -G '.gpu_data/*' >/dev/null; then
    python3 -m deepsparse_core --progress none prepare .gpu_data --out $WORK/real --candidates 120 \
      --splits 1 0 0 --augment $AUGMENT --workers 8 --device $DEVICE
  fi"
DATA="$WORK/synth"; [ -d "$WORK/real" ] && DATA="$DATA $WORK/real"

# 4. training: a probe in a throwaway folder times the loop (the step rate over its second half, from
# log.jsonl's elapsed_s, and the start-up, BatchNorm calibration and export around it), then a fresh run
# from the same start gets the cosine horizon that fits the time left (TRAIN_MINUTES at most, 90 s kept:
# 60 for the export, 30 of grace): one schedule from warmup to the end, no reset. The model comes back
# even if cut short.
RUN=$WORK/run-$(date +%s)   # fresh folders: a warm machine keeps /tmp, and train refuses a used one
export_model() {
  local src="$RUN/last.safetensors"
  [ -f "$src" ] || src="$RUN/model.safetensors"
  [ -f "$src" ] || return 0
  cp "$RUN/log.jsonl" "$OUT/log.jsonl" 2>/dev/null
  python3 -c "
import sys, torch
from deepsparse_core.model.model_file import load_model, save_model
model, meta = load_model(sys.argv[1])
save_model(sys.argv[2], model, n_views=meta.get('n_views'), card=meta['card'], dtype=torch.float16)
print(f'model back: {sys.argv[2]} (float16, from {sys.argv[1]}), step {meta[\"card\"].get(\"step\", \"?\")}, '
      f'{model.num_parameters() / 1e6:.2f} M parameters')
" "$src" "$OUT/model.safetensors" 2>&1 | tee -a "$OUT/summary.txt"
}
trap export_model EXIT
COMMON=(--stage scratch --min-views 6 --max-views 10 --batch-size "$BATCH" --points 8000
        --lr "${LR:-2e-4}" --schedule cosine --warmup-steps 20 --min-lr 1e-5 --val-every 0 --checkpoint-every 500
        --seed 7 --device "$DEVICE")
t0=$SECONDS
if [ -n "${TRAIN_STEPS:-}" ]; then
  STEPS=$TRAIN_STEPS
else
  note "the probe (its log in train.log, before the run's):"
  step train 300 python3 -m deepsparse_core --progress none train "${MODEL[@]}" --data $DATA \
    --out "$RUN-probe" --steps "$PROBE" --log-every 5 "${COMMON[@]}"
  # prints "STEPS RATE OVERHEAD": the horizon for the time left after a second start-up like the probe's
  PLAN=$(python3 - "$RUN-probe/log.jsonl" $((SECONDS - t0)) $(( DEADLINE - SECONDS - 90 )) "$TRAIN_MINUTES" <<'PY'
import json, sys
rows = []
try:
    for line in open(sys.argv[1]):
        try:
            rows.append(json.loads(line))
        except ValueError:                        # a line cut short when the probe was stopped
            pass
except OSError:
    pass
steps = [(r["step"], r["elapsed_s"]) for r in rows if r.get("event") == "train" and "elapsed_s" in r]
probe_s, left_s, minutes = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
if len(steps) < 4:
    print(0, 0, 0)
    sys.exit()
(s1, e1), (s2, e2) = steps[len(steps) // 2], steps[-1]
rate = (s2 - s1) / max(e2 - e1, 1e-3)
overhead = probe_s - steps[-1][0] / rate          # start-up, BatchNorm calibration, export
train_s = min(minutes * 60, left_s) - overhead
# the full run's loop was 9% slower than the probe's second half on the H200 (12.9 against 14.2 steps/s at
# batch 16: checkpoints, a longer log), so the horizon is planned at 0.9 of the probe's rate
print(max(int(0.9 * rate * train_s), 0), f"{rate:.1f}", f"{overhead:.0f}")
PY
)
  read -r STEPS RATE OVERHEAD <<<"$PLAN"
  note "probe: $RATE steps/s, ${OVERHEAD} s around the loop; horizon $STEPS steps"
fi
LEFT_S=$(( DEADLINE - SECONDS - 90 ))   # 60 s for the export, 30 s of grace for the run's own --minutes stop
TRAIN_S=$(( TRAIN_MINUTES * 60 < LEFT_S ? TRAIN_MINUTES * 60 : LEFT_S ))
# --minutes bounds the loop only (from after the start-up): the process takes it plus the overhead around
# the loop that the probe measured (30 s assumed without a probe), so the loop gets TRAIN_S less that
LOOP_S=$(( TRAIN_S - ${OVERHEAD:-30} ))
if [ "${STEPS:-0}" -gt 0 ] && [ "$LOOP_S" -gt 30 ]; then
  step train $((TRAIN_S + 30)) python3 -m deepsparse_core --progress none train "${MODEL[@]}" --data $DATA \
    --out "$RUN" --steps "$STEPS" --minutes "$(python3 -c "print($LOOP_S / 60)")" "${COMMON[@]}"
else
  note "no training: probe failed or no time left ($LEFT_S s, horizon ${STEPS:-0} steps)"
fi
export_model
trap - EXIT
note "gpu_run done; back under $OUT: $(ls "$OUT" | tr '\n' ' ')"
