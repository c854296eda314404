#!/usr/bin/env bash
# Refresh a committed snapshot of the DAG's reports (make demo: reports -> docs/demo).
#   workflow/scripts/snapshot.sh reports docs/demo
# The snapshot lives where Snakemake never takes it for its own output, so a fresh clone's
# `snakemake --cores 8 all` runs the demo. It holds what a reader can use without the run's
# mlflow.db: Markdown and LaTeX tables, metrics.json, the curves' and sweeps' CSVs, the figures
# (PNG; PDF written without a creation date) and the report's screenshot when chromium made one.
# The HTML tables and report.html (links into the local MLflow runs, new ids every run) stay out.
# The snapshot is replaced whole: a file the run did not make (no chromium, no screenshot) is gone
# from it rather than left stale.
set -euo pipefail
src=${1:?usage: snapshot.sh REPORTS SNAPSHOT}
dst=${2:?usage: snapshot.sh REPORTS SNAPSHOT}
[ -f "$src/metrics.json" ] || { echo "snapshot: $src/metrics.json missing: run the DAG first" >&2; exit 1; }
tmp=$(realpath -- "$(mktemp -d "${dst%/}.tmp.XXXXXX")")  # absolute: the copy below runs inside $src
trap 'rm -rf -- "$tmp"' EXIT
(cd -- "$src" && find . -path ./study -prune -o -type f \( -name '*.md' -o -name '*.tex' -o -name '*.csv' \
    -o -name '*.png' -o -name '*.pdf' -o -name '*.json' \) -print0 | xargs -0 -r cp --parents -t "$tmp")
rm -rf -- "$dst"
mv -- "$tmp" "$dst"
trap - EXIT
echo "snapshot: $src -> $dst ($(find "$dst" -type f | wc -l) files)"
