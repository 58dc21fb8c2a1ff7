#!/usr/bin/env bash
# lumi-imaging against sharp (libvips), same photo, same three pipelines, same machine, same run.
#
# Both sides are pinned to one core (taskset -c 0) and run in alternation for ROUNDS rounds, so a
# busy neighbour slows both alike; the summary takes the median of each side's per-round medians
# and prints ours/sharp ratios (goal <= 0.80), output sizes (goal: within 1% of sharp's) and our
# peak RSS for one operation in a fresh process (goal <= 64 MB); then each output's PSNR against a
# lossless resize, ours next to sharp's (quality.js: ours must not be worse). Then the cold path (cold.py):
# a fresh process decoding and resizing the photo once, ours against node loading sharp, COLD_RUNS
# alternating runs, median wall ratio (goal <= 0.20) and each side's peak RSS.
#
# Environment (defaults in brackets):
#   BENCH_PHOTO  the input JPEG                [<repo>/../shared/bench/photo_4000x3000.jpg]
#   SHARP_SRC    sharp's reference bench.js    [<repo>/../shared/bench/sharp]
#   SHARP_DIR    where it is copied and npm-installed  [<repo>/target/sharp-bench]
#   ROUNDS ITERS WARMUP                        [3 30 3]
#   COLD_RUNS                                  [15]
#   CARGO_TARGET_DIR                           [<repo>/target]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
photo=${BENCH_PHOTO:-$root/../shared/bench/photo_4000x3000.jpg}
sharp_src=${SHARP_SRC:-$root/../shared/bench/sharp}
sharp_dir=${SHARP_DIR:-$root/target/sharp-bench}
rounds=${ROUNDS:-3}
iters=${ITERS:-30}
warmup=${WARMUP:-3}
cold_runs=${COLD_RUNS:-15}
ops=resize800_jpeg,resize800_webp,thumb200_jpeg
target=${CARGO_TARGET_DIR:-$root/target}

for tool in node npm taskset cargo python3; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 1; }
done
[[ -x /usr/bin/time ]] || { echo "run.sh: GNU time (/usr/bin/time, Debian's \`time\`) is required for the cold path's peak memory" >&2; exit 1; }
[[ -f $photo ]] || { echo "run.sh: no photo at $photo (set BENCH_PHOTO)" >&2; exit 1; }

# sharp: a private copy of the reference folder, npm-installed once.
if [[ ! -f $sharp_dir/bench.js ]]; then
  [[ -f $sharp_src/bench.js ]] || { echo "run.sh: no sharp bench at $sharp_src (set SHARP_SRC)" >&2; exit 1; }
  mkdir -p "$sharp_dir"
  cp "$sharp_src"/* "$sharp_dir"/
  chmod -R u+w "$sharp_dir"
fi
if [[ ! -d $sharp_dir/node_modules/sharp ]]; then
  (cd "$sharp_dir" && npm install --no-audit --no-fund --loglevel=error)
fi

# ours: the release profile the Lambda ships with.
(cd "$root" && cargo build --release --quiet -p lumi-imaging --bin imaging-bench --bin imaging-cold)
bench=$target/release/imaging-bench

# Ours runs as the images function is deployed: with its glibc tunables from template.yaml (keep
# freed memory between transforms); sharp with the environment as it is.
tunables=$(sed -n 's/^ *GLIBC_TUNABLES: *//p' "$root/template.yaml")
[[ -n $tunables ]] || { echo "run.sh: no GLIBC_TUNABLES for the images function in template.yaml" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "# photo $photo, $rounds rounds of $iters iterations after $warmup warm-ups, one core"
for ((r = 1; r <= rounds; r++)); do
  echo "# round $r/$rounds: lumi-imaging" >&2
  GLIBC_TUNABLES=$tunables taskset -c 0 "$bench" "$photo" "$ops" "$iters" "$warmup" >>"$out/ours.jsonl"
  echo "# round $r/$rounds: sharp" >&2
  (cd "$sharp_dir" && taskset -c 0 node bench.js "$photo" "$ops" "$iters" "$warmup" 1) \
    >>"$out/sharp.txt"
done

node "$here/summarize.js" "$out/ours.jsonl" "$out/sharp.txt"
# Quality: each op's output against a lossless resize, ours next to sharp's (quality.js).
"$bench" write "$photo" "$out/outputs" >/dev/null
(cd "$sharp_dir" && node "$here/quality.js" "$photo" "$out/outputs")
OURS_GLIBC_TUNABLES=$tunables python3 "$here/cold.py" "$cold_runs" "$photo" "$target/release/imaging-cold" "$sharp_dir"
