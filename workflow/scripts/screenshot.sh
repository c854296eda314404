#!/usr/bin/env bash
# Open the Snakemake report in headless Chromium (Debian: apt-get install -y chromium):
#   workflow/scripts/screenshot.sh reports/report.html reports/report.png   # a 1400x1800 screenshot
#   workflow/scripts/screenshot.sh reports/report.html --dump-dom           # the rendered DOM, on stdout
# Without Chromium it prints a note and exits 0: the screenshot is optional.
set -euo pipefail
report=$(realpath "$1")
what=$2
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    [ "$what" = --dump-dom ] || rm -f -- "$what"  # never leave an older screenshot looking fresh
    echo "note: no chromium, so no screenshot of $1 (sudo apt-get install -y chromium)" >&2
    exit 0
fi
profile=$(mktemp -d)  # a fresh profile: no state from, or lock on, another Chromium
trap 'rm -rf "$profile"' EXIT
# the report renders itself with JavaScript (React): give it 15 s of virtual time first
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$profile" --window-size=1400,1800
       --virtual-time-budget=15000)
if [ "$what" = --dump-dom ]; then
    timeout 180 "$browser" "${flags[@]}" --dump-dom "file://$report" 2>/dev/null
else
    timeout 180 "$browser" "${flags[@]}" --screenshot="$(realpath -m "$what")" "file://$report" 2>/dev/null
    echo "wrote $what" >&2
fi
