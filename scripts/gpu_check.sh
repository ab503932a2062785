#!/usr/bin/env bash
# The GPU check of issue #11, one command on a CUDA machine: each step has a time cap, under 8 minutes
# in all (expected 4-6 minutes on one H200; not yet run on one):
#   1. the stage tests (tests/stages, plus the RL precision unit tests) with every stage forced onto
#      CUDA (RLAIF_DEVICE=cuda);
#   2. `rlaif run configs/tiny.yaml` with every stage on CUDA, in float32 and in bfloat16 (every dtype
#      field of the config overridden), each stage checked to have used the GPU, then the RL stage in
#      the paper's precision (float32 weights under bf16 mixed precision, standard mode);
#   3. PPO steps of `lean` and `standard` on a randomly initialised GPT-2-Large-sized model, printing
#      episodes/s and peak GPU memory.
# It needs python3 with torch (CUDA), transformers, accelerate and peft, and no network: models are
# built from configs, the tokenizer is the tiny-random folder's. What a bare CUDA machine lacks (that
# folder, the ../shared/data files the tests read, wheels of `datasets`, `dill`, `multiprocess`)
# comes from .gpu_check/, made beforehand on a machine with rlaif set up:
#   bash scripts/gpu_check.sh --bundle      # writes .gpu_check/ (~20 MiB; ignored by git)
#   bash scripts/gpu_check.sh               # on the CUDA machine, from a copy of the tree with .gpu_check/
#   bash scripts/gpu_check.sh --cpu         # the same steps, small, on the CPU: checks the script itself
# The log goes to stdout and to ${OUT:-/tmp}/gpu_check.log. Exit status: the number of failed steps.
set -uo pipefail

MODE=cuda
case "${1:-}" in
  "") ;;
  --cpu) MODE=cpu ;;
  --bundle) MODE=bundle ;;
  *) echo "usage: bash scripts/gpu_check.sh [--cpu | --bundle]" >&2; exit 2 ;;
esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-python3}"
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [[ "$MODE" == bundle ]]; then
  exec "$PY" scripts/gpu_check.py bundle   # .gpu_check/ is in .gitignore: carry it to the device machine
fi

# --- what a bare machine lacks, from the bundle -----------------------------------------------------
if [[ -d .gpu_check ]]; then
  WHEELS=".gpu_check/wheels/$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if ! "$PY" -c "import datasets" 2>/dev/null && compgen -G "$WHEELS/*.whl" > /dev/null; then
    SITE="$(mktemp -d /tmp/rlaif-gpu-check-site.XXXX)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:$SITE"
  fi
  [[ -f .gpu_check/cache/tiny-random-llama/config.json ]] && export RLAIF_CACHE="$REPO/.gpu_check/cache"
  if [[ ! -e ../shared/data && -d .gpu_check/shared/data ]]; then
    ln -s "$REPO/.gpu_check/shared" ../shared   # the configs and tests read ../shared/data
  fi
fi
export RLAIF_DEVICE="$MODE"
WORK="$(mktemp -d /tmp/rlaif-gpu-check.XXXX)"
LOG="${OUT:-/tmp}/gpu_check.log"
: > "$LOG"
FAILED=0
RESULTS=()

step() {  # step NAME SECONDS COMMAND...: run with a time cap, log, record PASS/FAIL
  local name="$1" cap="$2"; shift 2
  echo "=== $name (cap ${cap}s): $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout --kill-after=10 "$cap" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  local took=$((SECONDS - t0))
  if [[ $rc -eq 0 ]]; then RESULTS+=("PASS  $name  ${took}s"); else RESULTS+=("FAIL  $name  ${took}s (exit $rc)"); FAILED=$((FAILED + 1)); fi
}

step "environment" 45 "$PY" scripts/gpu_check.py env --device "$MODE"
if [[ $FAILED -ne 0 ]]; then
  echo "environment check failed; nothing else run" | tee -a "$LOG"
  exit 1
fi
if [[ "$MODE" == cuda ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG"
  step "stage tests on CUDA" 180 "$PY" -m pytest -q -x -p no:cacheprovider tests/stages tests/unit/test_rl_precision.py
  step "rlaif run tiny, float32" 70 "$PY" scripts/gpu_check.py tiny-run --precision fp32 --out "$WORK/tiny-fp32"
  step "rlaif run tiny, bfloat16" 60 "$PY" scripts/gpu_check.py tiny-run --precision bf16 --out "$WORK/tiny-bf16"
  step "PPO steps, GPT-2-Large size" 115 "$PY" scripts/gpu_check.py ppo-step --size large --work "$WORK/ppo"
else  # --cpu: the same steps, small, to check the script and its module
  step "stage tests on the CPU (the RL device test only)" 300 "$PY" -m pytest -q -x -p no:cacheprovider tests/stages/test_rl_device.py
  step "rlaif run tiny, float32" 600 "$PY" scripts/gpu_check.py tiny-run --precision fp32 --out "$WORK/tiny-fp32"
  step "rlaif run tiny, bfloat16" 600 "$PY" scripts/gpu_check.py tiny-run --precision bf16 --out "$WORK/tiny-bf16"
  step "PPO steps, tiny GPT-2" 300 "$PY" scripts/gpu_check.py ppo-step --size tiny --work "$WORK/ppo"
fi
rm -rf "$WORK"

echo "=== summary ($MODE)" | tee -a "$LOG"
printf '%s\n' "${RESULTS[@]}" | tee -a "$LOG"
exit "$FAILED"
