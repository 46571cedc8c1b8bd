"""Recall@k of one search report against a reference report (both `retrieve search --json`).

    python3 scripts/recall.py REFERENCE.json OTHER.json [id|sentence]

Hits are matched by item id (same index) or by sentence (stores with different ids, e.g. a
local index and its copy in Milvus).
"""
import json
import sys

reference, other = (json.load(open(p, encoding="utf-8")) for p in sys.argv[1:3])
key = sys.argv[3] if len(sys.argv) > 3 else "id"
found = total = 0
for qr, qo in zip(reference["queries"], other["queries"]):
    want = {h[key] for h in qr["results"]}
    found += len(want & {h[key] for h in qo["results"]})
    total += len(want)
k = max((len(q["results"]) for q in reference["queries"]), default=0)
print(f"recall@{k} = {found / max(total, 1):.4f} over {len(reference['queries'])} queries")
