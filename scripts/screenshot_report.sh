#!/usr/bin/env bash
# Screenshot a run's report in headless Chromium (Debian: apt-get update && apt-get install -y chromium).
#   bash scripts/screenshot_report.sh runs/demo [docs/report_screenshot.png] [WIDTHxHEIGHT]
# The page is rendered at WIDTH x HEIGHT (default 1280x2600: the results, the judge checks and the
# first stage sections) and saved as a PNG.
set -euo pipefail
run_dir="${1:?usage: $0 RUN_DIR [OUT.png] [WIDTHxHEIGHT]}"
out="${2:-docs/report_screenshot.png}"
size="${3:-1280x2600}"
page="$run_dir/report/report.html"
[[ -f "$page" ]] || { echo "no report at $page; run \`rlaif report CONFIG\` first" >&2; exit 1; }
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[[ -n "$browser" ]] || { echo "headless Chromium not found: apt-get update && apt-get install -y chromium" >&2; exit 1; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
mkdir -p "$(dirname "$out")"
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --disable-sync --no-first-run --hide-scrollbars --user-data-dir="$profile" \
  --window-size="${size/x/,}" --virtual-time-budget=10000 \
  --screenshot="$(realpath -m "$out")" "file://$(realpath "$page")" 2>/dev/null
echo "$out"
