#!/usr/bin/env bash
# One front door for set-up and the project's jobs, on a fresh Debian/Ubuntu machine.
#
#   ./run.sh demo            main job (offline, no ROS needed)
#   ./run.sh test [ARGS]     the test suite (pytest ARGS)
#   ./run.sh setup           only create/refresh the virtual environment
#   ./run.sh facealign ARGS  any `facealign` command inside the environment
#
# Each call is idempotent: it creates .venv (or $FACEALIGN_VENV) if missing and installs what is
# missing. torch: a CUDA build where an NVIDIA GPU is visible, otherwise the CPU build
# (override with FACEALIGN_TORCH=cpu|cuda).
set -euo pipefail
cd "$(dirname "$0")"

VENV="${FACEALIGN_VENV:-.venv}"
TORCH_VERSION="2.13.0"
PY="${PYTHON:-python3}"

log() { printf '[run.sh] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; return 1; fi
}

ensure_system() {
  if ! command -v "$PY" >/dev/null; then
    log "installing python3"; as_root apt-get update -qq; as_root apt-get install -y -qq python3
  fi
  if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    log "installing python3-venv"; as_root apt-get update -qq
    as_root apt-get install -y -qq python3-venv python3-pip
  fi
}

ensure_gl() {
  # Headless OpenGL (EGL) for the synthetic renderer; without it a numba rasteriser is used.
  if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1' && command -v apt-get >/dev/null; then
    log "installing libegl1 libgl1-mesa-dri (headless OpenGL)"
    { as_root apt-get update -qq && as_root apt-get install -y -qq libegl1 libgl1-mesa-dri; } \
      || log "could not install EGL; the synthetic engine falls back to its CPU rasteriser"
  fi
}

want_cuda() {
  case "${FACEALIGN_TORCH:-auto}" in
    cpu) return 1 ;; cuda) return 0 ;;
  esac
  command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1
}

ensure_venv() {
  ensure_system
  ensure_gl
  [ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
  local vpy="$VENV/bin/python"
  local pipq=("$vpy" -m pip install -q --disable-pip-version-check)
  if ! "$vpy" -c "import torch, sys; sys.exit(not torch.__version__.startswith('$TORCH_VERSION'))" \
      >/dev/null 2>&1; then
    if want_cuda; then
      log "installing torch $TORCH_VERSION (CUDA build)"; "${pipq[@]}" "torch==$TORCH_VERSION"
    else
      log "installing torch $TORCH_VERSION (CPU build)"
      "${pipq[@]}" --retries 1 --timeout 30 "torch==$TORCH_VERSION" \
        --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple \
        || "${pipq[@]}" "torch==$TORCH_VERSION"
    fi
  fi
  local stamp="$VENV/.facealign-installed"
  local want
  want="$(cat setup.py package.xml | sha1sum | cut -c1-40)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing facealign_ros and its extras into $VENV"
    "${pipq[@]}" -e ".[train,bench,synth,dev]"
    echo "$want" >"$stamp"
  fi
  # BlazeFace, the node's face detector (from the mediapipe wheel on PyPI; ~35 MB): tried once per
  # environment, so an offline machine does not wait on every call (`./run.sh facealign
  # fetch-detector` tries again)
  local tried="$VENV/.facealign-detector-tried"
  if [ ! -f "$tried" ]; then
    "$VENV/bin/facealign" fetch-detector >/dev/null \
      || log "no BlazeFace model (see above): the face search falls back to grid candidates"
    touch "$tried"
  fi
}

cmd="${1:-demo}"
shift || true
case "$cmd" in
  setup) ensure_venv ;;
  demo) ensure_venv; exec "$VENV/bin/facealign" demo "$@" ;;
  test) ensure_venv; exec "$VENV/bin/python" -m pytest -q "$@" ;;
  facealign) ensure_venv; exec "$VENV/bin/facealign" "$@" ;;
  *) log "unknown command '$cmd' (use: demo | test | setup | facealign ARGS)"; exit 2 ;;
esac
