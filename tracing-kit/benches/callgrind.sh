#!/usr/bin/env bash
# Instructions per request of rows of the `http_server` bench, under callgrind: the inclusive
# cost of tokio's `CoreGuard::block_on` (one per request) divided by its calls. Repeatable to
# within 0.1 % whatever else the machine is doing, unlike wall-clock time on a shared VM.
#
#   cargo bench -p sinew-tracing-kit --all-features --bench http_server --no-run
#   tracing-kit/benches/callgrind.sh [BENCH_BINARY] -- bare_handler layer_sampled ...
#
# Without a binary, the newest `target/release/deps/http_server-*` is used. Needs valgrind.
set -euo pipefail
bin=""
if [[ $# -gt 0 && $1 != "--" ]]; then bin=$1; shift; fi
[[ ${1:-} == "--" ]] && shift
target=${CARGO_TARGET_DIR:-target}
if [[ -z $bin ]]; then
  bin=$(ls -t "$target"/release/deps/http_server-* | grep -v '\.d$' | head -1)
fi
rows=("$@")
if [[ ${#rows[@]} -eq 0 ]]; then
  rows=(bare_handler noop_layer tower_bare_handler layer_sampled tower_http_trace_sampled
        tower_layer_sampled layer_unsampled tower_http_trace_unsampled tower_layer_unsampled
        bare_handler_no_parent layer_unsampled_no_parent tower_bare_handler_no_parent
        tower_layer_unsampled_no_parent)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for row in "${rows[@]}"; do
  valgrind --tool=callgrind --callgrind-out-file="$work/$row.out" "$bin" --bench \
    --profile-time 2 "^http_server/$row\$" >/dev/null 2>&1
  callgrind_annotate --inclusive=yes --tree=caller "$work/$row.out" >"$work/$row.txt" 2>/dev/null
  # The caller line `< ...enter_runtime (Nx)` is followed by the `* ...CoreGuard::block_on` line.
  read -r ir calls < <(awk '
    /< .*enter_runtime \(/ { match($0, /\(([0-9,]+)x\)/); c = substr($0, RSTART + 1, RLENGTH - 3); gsub(",", "", c); next_is = 1; next }
    next_is && /\*  .*CoreGuard::block_on \[/ { i = $1; gsub(",", "", i); print i, c; exit }
    { next_is = 0 }' "$work/$row.txt")
  printf '%-32s %8d instructions per request\n' "$row" $((ir / calls))
done
