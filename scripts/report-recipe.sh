#!/usr/bin/env bash
# Train a recipe once per seed and report it on data that chose nothing: the QQP reporting pairs
# (eval --report: pair verdicts, retrieval over every question of dev.tsv, search verdicts at the
# stored search threshold), SICK TRIAL and STS-B dev (which neither the training pairs nor the
# distillation transfer set contain). Prints one line per seed and the mean ± std over seeds.
#
#   scripts/report-recipe.sh configs/quora-distill.toml 42 7 99      # trains runs/<name>-s<seed>
#   scripts/report-recipe.sh --no-train configs/quora-distill.toml 42 7 99
#
# Epochs and thresholds are chosen on the selection pairs inside training; nothing here is
# chosen on what it reports. Needs python3 (stdlib) to aggregate the JSON that eval prints.
set -euo pipefail
cd "$(dirname "$0")/.."
train=1
if [[ "${1:-}" == --no-train ]]; then train=0; shift; fi
if [[ $# -lt 2 ]]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
config="$1"; shift
name="$(basename "$config" .toml)"
cargo build --release --workspace --quiet
bin="${CARGO_TARGET_DIR:-target}/release"
out="runs/report/$name"
mkdir -p "$out"
for seed in "$@"; do
  model="runs/$name-s$seed"
  if [[ $train == 1 ]]; then
    "$bin/train" --config "$config" --seed "$seed" --output "$model" --quiet 2> "$out/train-s$seed.log"
  fi
  "$bin/eval" --model "$model" --report --verdicts --backend flex --json > "$out/qqp-s$seed.json"
  "$bin/eval" --model "$model" --task sick --split sick/SICK.txt --subset TRIAL --backend flex --json > "$out/sick-s$seed.json"
  "$bin/eval" --model "$model" --task stsb --split stsbenchmark/sts-dev.csv --backend flex --json > "$out/stsb-s$seed.json"
done
python3 - "$out" "$@" <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
cols = [("acc", lambda q, s, t: q["binary"]["accuracy"]), ("AP", lambda q, s, t: q["binary"]["average_precision"]),
        ("MRR@10", lambda q, s, t: q["retrieval"]["mrr_at_10"]),
        ("detect", lambda q, s, t: q["search_verdicts"]["at_package_threshold"]["detection"]),
        ("false_al", lambda q, s, t: q["search_verdicts"]["at_package_threshold"]["false_alarm"]),
        ("SICK_r", lambda q, s, t: s["graded"]["pearson"]), ("STSB_rho", lambda q, s, t: t["graded"]["spearman"])]
rows = []
for seed in seeds:
    load = lambda kind: json.load(open(f"{out}/{kind}-s{seed}.json"))
    q, s, t = load("qqp"), load("sick"), load("stsb")
    rows.append([f(q, s, t) for _, f in cols])
print("seed     " + "  ".join(f"{c:>9}" for c, _ in cols))
for seed, r in zip(seeds, rows):
    print(f"{seed:<8} " + "  ".join(f"{v:>9.4f}" for v in r))
if len(rows) > 1:
    means = [statistics.mean(c) for c in zip(*rows)]
    stds = [statistics.stdev(c) for c in zip(*rows)]
    print("mean     " + "  ".join(f"{m:>9.4f}" for m in means))
    print("std      " + "  ".join(f"{s:>9.4f}" for s in stds))
PY
