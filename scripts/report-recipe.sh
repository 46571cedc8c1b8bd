#!/usr/bin/env bash
# Train a recipe once per seed and report it on data that chose nothing: the QQP reporting pairs
# (eval --report: pair verdicts, retrieval over every question of dev.tsv, search verdicts at the
# stored search threshold), SICK TRIAL and STS-B dev (which neither the training pairs nor the
# distillation transfer set contain). Prints one line per seed and the mean ± std over seeds.
#
#   scripts/report-recipe.sh configs/quora-distill.toml 42 7 99      # trains runs/<name>-s<seed>
#   scripts/report-recipe.sh --no-train configs/quora-distill.toml 42 7 99
#   scripts/report-recipe.sh --jobs 3 configs/quora-distill.toml 42 7 99   # 3 trainings at once
#
# --jobs N trains up to N seeds side by side, each on one thread (RAYON_NUM_THREADS=1): on a small
# machine that finishes sooner than one run after another on every core. A run's floating-point
# sums depend on its thread count, so its numbers equal a one-thread run's, not a many-thread one's.
# Epochs and thresholds are chosen on the selection pairs inside training; nothing here is
# chosen on what it reports. Needs python3 (stdlib) to aggregate the JSON that eval prints.
# First it prints the selection part's numbers of each kept epoch (from the packages'
# metrics.json: head AP, MRR@10, search detection and false alarm at the stored threshold, and
# each graded selection slice's Pearson and Spearman): recipes are compared on those, not on the second table.
set -euo pipefail
cd "$(dirname "$0")/.."
train=1
jobs=0
while [[ "${1:-}" == --* ]]; do
  case "$1" in
    --no-train) train=0; shift ;;
    --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
    *) echo "report-recipe.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ $# -lt 2 ]]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
config="$1"; shift
name="$(basename "$config" .toml)"
cargo build --release --workspace --quiet
bin="${CARGO_TARGET_DIR:-target}/release"
out="runs/report/$name"
mkdir -p "$out"
train_seed() {
  "$bin/train" --config "$config" --seed "$1" --output "runs/$name-s$1" --quiet > "$out/train-s$1.log" 2>&1
}
if [[ $train == 1 && $jobs -gt 0 ]]; then
  # Side by side, at most $jobs at a time; any failed training stops the report.
  pids=()
  for seed in "$@"; do
    while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n; done
    RAYON_NUM_THREADS=1 train_seed "$seed" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  train=0
fi
for seed in "$@"; do
  model="runs/$name-s$seed"
  if [[ $train == 1 ]]; then
    train_seed "$seed"
  fi
  "$bin/eval" --model "$model" --report --verdicts --backend flex --json > "$out/qqp-s$seed.json"
  "$bin/eval" --model "$model" --task sick --split sick/SICK.txt --subset TRIAL --backend flex --json > "$out/sick-s$seed.json"
  "$bin/eval" --model "$model" --task stsb --split stsbenchmark/sts-dev.csv --backend flex --json > "$out/stsb-s$seed.json"
done
python3 - "$out" "runs/$name" "$@" <<'PY'
import json, statistics, sys
out, models, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
cols = [("acc", lambda q, s, t: q["binary"]["accuracy"]), ("AP", lambda q, s, t: q["binary"]["average_precision"]),
        ("MRR@10", lambda q, s, t: q["retrieval"]["mrr_at_10"]),
        ("detect", lambda q, s, t: q["search_verdicts"]["at_package_threshold"]["detection"]),
        ("false_al", lambda q, s, t: q["search_verdicts"]["at_package_threshold"]["false_alarm"]),
        ("SICK_r", lambda q, s, t: s["graded"]["pearson"]), ("STSB_rho", lambda q, s, t: t["graded"]["spearman"])]
def table(title, names, rows):
    print(title)
    print("seed     " + "  ".join(f"{c:>12}" for c in names))
    for seed, r in zip(seeds, rows):
        print(f"{seed:<8} " + "  ".join(f"{v:>12.4f}" for v in r))
    if len(rows) > 1:
        print("mean     " + "  ".join(f"{statistics.mean(c):>12.4f}" for c in zip(*rows)))
        print("std      " + "  ".join(f"{statistics.stdev(c):>12.4f}" for c in zip(*rows)))

sel_rows, sel_names = [], ["head_AP", "MRR@10", "detect", "false_al"]
for seed in seeds:
    m = json.load(open(f"{models}-s{seed}/metrics.json"))
    best, chosen = m["best"], m.get("search_threshold_chosen_at", {})
    head = best.get("head") or {"average_precision": best["average_precision"]}
    row = [head["average_precision"], (best.get("retrieval") or {}).get("mrr_at_10", float("nan")),
           chosen.get("detection", float("nan")), chosen.get("false_alarm", float("nan"))]
    slices = best.get("graded_slices", [])
    if seed == seeds[0]:
        sel_names += [f"{s['name'].split(':')[0]}_{k}" for s in slices for k in ("r", "rho")]
    sel_rows.append(row + [v for s in slices for v in (s["pearson"], s["spearman"])])
table("selection part (kept epoch)", sel_names, sel_rows)
print()
rows = []
for seed in seeds:
    load = lambda kind: json.load(open(f"{out}/{kind}-s{seed}.json"))
    q, s, t = load("qqp"), load("sick"), load("stsb")
    rows.append([f(q, s, t) for _, f in cols])
table("reporting part (chose nothing)", [c for c, _ in cols], rows)
PY
