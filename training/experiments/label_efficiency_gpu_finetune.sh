#!/usr/bin/env bash
# Label-efficiency fine-tunes on a GPU machine lent for minutes, with the SSMER encoder pretrained
# beforehand elsewhere (docs/SSMER.md, "Longer fine-tunes on a GPU"). The machine makes only
# the labelled recordings (`python -m training.experiments.labelled_set`: 28 of the 276 for
# 10 %), measures the fine-tuning rate of the runs side by side (PROBE_STEPS steps), sizes
# the fine-tunes to end by DEADLINE_S, runs them (`label_efficiency --train-is-labelled
# --no-eval`: from scratch and from each encoder, every seed), and packs the models and logs
# into OUT. The held-out evaluation happens afterwards on any machine:
#   python -m training.experiments.label_efficiency --out DIR_OF_UNPACKED_RUNS ... (same --only,
#     --seeds, --modes; it finds the models and evaluates them on --test)
#
#   ENCODERS=DIR training/experiments/label_efficiency_gpu_finetune.sh WORK_DIR OUT_DIR
#
# Environment: ENCODERS (required) a folder with ssmer_<init>/encoder.safetensors for every
# pretrained init in INITS (default scratch,all3det); FRACTION (0.1); SEEDS (0,1); MODES
# (event); FT_BATCH (64); JOBS (4) runs at once with WORKERS (3) loader workers and THREADS (1)
# torch threads each; FT_STEPS fixes the steps (no probe); else PROBE_STEPS (80) and SAFETY (0.85,
# the share of the measured rate planned on); DEADLINE_S (540) seconds after the start by which
# the fine-tunes should end (they are interrupted 30 s after it, keeping their checkpoints);
# REQUIRE_CUDA=1 stops at once where torch sees no CUDA device. The synthetic head scans must
# be in FACEALIGN_CACHE (see label_efficiency_gpu.sh for the device command and the cache).
set -uo pipefail
work=${1:?usage: label_efficiency_gpu_finetune.sh WORK_DIR OUT_DIR}
out=${2:?usage: label_efficiency_gpu_finetune.sh WORK_DIR OUT_DIR}
encoders=${ENCODERS:?ENCODERS: folder with ssmer_<init>/encoder.safetensors}
py=${PYTHON:-python3}
procs=${PROCS:-$(nproc)}
fraction=${FRACTION:-0.1} inits=${INITS:-scratch,all3det}
seeds=${SEEDS:-0,1} modes=${MODES:-event}
batch=${FT_BATCH:-64} jobs=${JOBS:-4} workers=${WORKERS:-3} threads=${THREADS:-1}
steps=${FT_STEPS:-} probe_steps=${PROBE_STEPS:-80} safety=${SAFETY:-0.85}
deadline=${DEADLINE_S:-540}
start=$SECONDS
mkdir -p "$work" "$out"
work=$(cd "$work" && pwd) out=$(cd "$out" && pwd)  # absolute: packing runs elsewhere
logs=$work/logs
mkdir -p "$logs"
export FACEALIGN_CACHE=${FACEALIGN_CACHE:-$work/cache} PYTHONUNBUFFERED=1
# OpenCV on one thread per process from the start (read when cv2 loads, so forked loader
# workers inherit it; calling cv2.setNumThreads in a forked worker can deadlock)
export OPENCV_FOR_THREADS_NUM=1
log() { echo "[$((SECONDS - start)) s] $*" | tee -a "$out/steps.log"; }
# a whole percentage: the runs are named by it and a later evaluation relies on the name
pct=$("$py" -c "f = 100 * float('$fraction'); assert 0 < f <= 100 and abs(f - round(f)) < 1e-6
print(round(f))" 2>/dev/null) || { echo "FRACTION=$fraction: a whole percentage in (0, 1], e.g. 0.1"; exit 1; }
count() { echo "$1" | tr ',' '\n' | wc -l; }  # items of a comma list
runs=$(( $(count "$inits") * $(count "$seeds") * $(count "$modes") ))
waves=$(( (runs + jobs - 1) / jobs ))  # runs one after another when there are more than JOBS
only=$(echo "$inits" | tr ',' '\n' | sed "s/^/$pct:/" | paste -sd,)

{ date -u; nproc; free -g; nvidia-smi -L 2>&1
  "$py" -c 'import torch, numpy; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-", "numpy", numpy.__version__)'
} >"$logs/env.txt" 2>&1
if [ "${REQUIRE_CUDA:-0}" = 1 ] &&
  ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  log "no CUDA device"; cat "$logs/env.txt"; exit 1
fi
for init in ${inits//,/ }; do
  if [ "$init" != scratch ] && [ ! -f "$encoders/ssmer_$init/encoder.safetensors" ]; then
    log "missing $encoders/ssmer_$init/encoder.safetensors"; exit 1
  fi
done
if ! "$py" -c 'from training.synth.assets import fetch_assets; fetch_assets()' >"$logs/assets.log" 2>&1
then
  log "head assets unavailable: $(tail -1 "$logs/assets.log")"; exit 1
fi
ulimit -n 65536 2>/dev/null || true
# loader batches travel through /dev/shm (~40 MB per event-only batch of 64, a few per worker)
shm_kb=$(df -k --output=size /dev/shm 2>/dev/null | tail -1)
if [ "${shm_kb:-0}" -lt $((8 * 1024 * 1024)) ]; then
  mount -o remount,size=16G /dev/shm 2>/dev/null && log "/dev/shm enlarged to 16G"
fi
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 10 \
  >"$logs/gpu.csv" 2>/dev/null &
smi=$!
trap 'kill "$smi" 2>/dev/null' EXIT

# 1. The labelled recordings only, longest first, one single-threaded make_set per core.
"$py" -m training.experiments.labelled_set --fraction "$fraction" --root "$work/data" \
  | sort -k3,3nr >"$logs/labelled.txt" || exit 1
log "generating $(wc -l <"$logs/labelled.txt") labelled recordings on $procs processes"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
  xargs -P "$procs" -L 1 sh -c '"$0" -m training.synth.make_set --out "$1" --first "$2" \
    --train 1 --val 0 --test 0 --seconds "$3" --workers 1' "$py" <"$logs/labelled.txt" \
  >"$logs/generate.log" 2>&1
made=$(ls -d "$work"/data/*/train_* 2>/dev/null | wc -l)
log "made $made recordings"
if [ "$made" -ne "$(wc -l <"$logs/labelled.txt")" ]; then
  tail -30 "$logs/generate.log"; exit 1
fi

experiment() {  # experiment OUT_DIR STEPS [timeout args...]
  local dir=$1 n=$2; shift 2
  "$@" "$py" -m training.experiments.label_efficiency --out "$dir" \
    --train "$work/data/*/train_*" --test none --train-is-labelled --no-eval \
    --encoders "$encoders" --only "$only" --seeds "$seeds" --modes "$modes" \
    --finetune-steps "$n" --finetune-batch "$batch" --jobs "$jobs" --workers "$workers" \
    --threads "$threads"
}

# 2. The fine-tuning rate, every run side by side as in the real thing (also fills the decoded
# bag cache); steps = the slowest run's steady rate x the time left x SAFETY.
if [ -z "$steps" ]; then
  t0=$SECONDS
  experiment "$work/probe" "$probe_steps" timeout 240 >"$logs/probe.log" 2>&1
  log "probe exit $? after $((SECONDS - t0)) s"
  rate=$(for f in "$work"/probe/cmfa_*/run.log; do
    grep -o '[0-9.]* samples/s' "$f" | tail -1 | awk '{print $1}'; done | sort -n | head -1)
  grep -h 'samples/s' "$work"/probe/cmfa_*/run.log >"$logs/probe_rates.txt"
  # start-up (workers, CUDA, model) = the probe's wall time less its steps at the steady rate
  read -r steps left < <("$py" -c "
r, dur, elapsed = float('${rate:-0}') or 1e-9, $((SECONDS - t0)), $((SECONDS - start))
startup = max(0.0, dur - $probe_steps * $batch / r)
left = $deadline - elapsed - startup
print(max(0, int(r / $batch * left * $safety / $waves // 100) * 100), int(left))")
  log "probe: slowest steady rate ${rate:-none} samples/s, $left s left, $runs runs in $waves" \
    "wave(s) -> $steps steps"
  cp -r "$work/probe" "$logs/probe_runs" 2>/dev/null
  find "$logs/probe_runs" -name '*.safetensors' -o -name checkpoints | xargs rm -rf
  if [ "$steps" -lt 200 ]; then
    log "too slow for a meaningful fine-tune; stopping"
    (cd "$logs" && tar czf "$out/logs.tar.gz" .); exit 1
  fi
fi

# 3. The fine-tunes, interrupted 30 s after the deadline (checkpoints kept).
left=$((deadline + 30 - (SECONDS - start)))
if [ "$left" -lt 60 ]; then  # (timeout 0 would mean no limit at all)
  log "only $left s left before the deadline: no fine-tunes"
  (cd "$logs" && tar czf "$out/logs.tar.gz" .); exit 1
fi
log "fine-tunes: $only, seeds $seeds, modes $modes, $steps steps x $batch (limit $left s)"
experiment "$work/exp" "$steps" timeout --signal=INT --kill-after=10 "$left" \
  >"$logs/experiment.log" 2>&1
rc=$?
log "fine-tunes exit $rc"
kill "$smi" 2>/dev/null

# 4. Pack: the models (~2.3 MB each) and the logs; a run stopped before its end, its latest
# checkpoint (resume it anywhere with the same `label_efficiency` command).
(cd "$work/exp" && tar cf "$out/models.tar" cmfa_*/model.safetensors) 2>/dev/null
for run in "$work"/exp/cmfa_*; do
  name=$(basename "$run") ckpt=$run/checkpoints
  if [ ! -f "$run/model.safetensors" ] && [ -f "$ckpt/latest" ]; then
    (cd "$work/exp" && tar cf "$out/resume_$name.tar" "$name/config.yaml" \
      "$name/checkpoints/latest" "$name/checkpoints/$(cat "$ckpt/latest")")
    log "$name stopped before its end: packed its checkpoint $(cat "$ckpt/latest")"
  elif [ ! -f "$run/model.safetensors" ]; then
    log "$name stopped before its first checkpoint: nothing to keep"
  fi
done
(cd "$work" && tar czf "$out/logs.tar.gz" --exclude='*.safetensors' --exclude=checkpoints \
  --exclude=tb logs exp)
log "packed: $(ls "$out" | tr '\n' ' ')"
grep -h 'step .* samples/s' "$work"/exp/cmfa_*/run.log | tail -8
finished=$(ls "$work"/exp/cmfa_*/model.safetensors 2>/dev/null | wc -l)
log "$finished of $runs fine-tunes finished"
[ "$rc" -eq 0 ] && [ "$finished" -eq "$runs" ]
