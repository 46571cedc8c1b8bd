#!/usr/bin/env python3
"""The PyTorch (and faiss) side of scripts/bench.sh: the same workloads as crates/bench.

A plain Siamese LSTM the way one writes it in PyTorch: nn.Embedding (GloVe-50 init) + nn.LSTM
(h=128) over packed sequences, last hidden state, L2-normalised; contrastive loss, Adam. Writes a
JSON list of measurements in crates/bench's format, so `bench --compare` can print ratios.
Needs torch; faiss is optional (search is skipped without it). `--device cuda` runs training and
encoding on a GPU (cuDNN's LSTM), to set against `bench --backends wgpu` on the same machine.
"""
import argparse
import json
import random
import re
import resource
import time

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

TOKEN = re.compile(r"\w+|[^\w\s]")


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load(data_dir, emb_dir, max_vocab=40000, max_len=48):
    pairs = []
    with open(f"{data_dir}/qqp/bimpm_partition/dev.tsv", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3:
                pairs.append((parts[1], parts[2], float(parts[0])))
    counts = {}
    for a, b, _ in pairs:
        for s in (a, b):
            for w in TOKEN.findall(s.lower()):
                counts[w] = counts.get(w, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w))[: max_vocab - 2]
    vocab = {w: i + 2 for i, w in enumerate(words)}  # 0 = pad, 1 = unk
    table = torch.randn(len(vocab) + 2, 50) * 0.1
    table[0] = 0
    with open(f"{emb_dir}/glove.6B.50d.100k.txt", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip().split(" ")
            if parts[0] in vocab and len(parts) == 51:
                table[vocab[parts[0]]] = torch.tensor([float(x) for x in parts[1:]])

    def ids(s):
        return [vocab.get(w, 1) for w in TOKEN.findall(s.lower())][:max_len] or [1]

    return pairs, table, ids


class Encoder(nn.Module):
    def __init__(self, table, hidden):
        super().__init__()
        self.emb = nn.Embedding.from_pretrained(table, freeze=False, padding_idx=0)
        self.lstm = nn.LSTM(table.shape[1], hidden, batch_first=True)

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(self.emb(ids), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return nn.functional.normalize(h[-1], dim=1)


DEVICE = torch.device("cpu")
BACKEND = "pytorch"


def pad(rows):
    lengths = torch.tensor([len(r) for r in rows])  # pack_padded_sequence wants them on the CPU
    out = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out.to(DEVICE), lengths


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def bench_train(pairs, table, ids, batch, hidden, seconds):
    torch.manual_seed(42)
    model = Encoder(table, hidden).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    a = [ids(p[0]) for p in pairs]
    b = [ids(p[1]) for p in pairs]
    order = list(range(len(pairs)))
    random.Random(42).shuffle(order)
    chunks = [order[i : i + batch] for i in range(0, len(order), batch)]

    def step(idx):
        ia, la = pad([a[i] for i in idx])
        ib, lb = pad([b[i] for i in idx])
        y = torch.tensor([pairs[i][2] for i in idx], device=DEVICE)
        d = (model(ia, la) - model(ib, lb)).pow(2).sum(1).add(1e-12).sqrt()
        loss = (y * d.pow(2) + (1 - y) * (1.0 - d).clamp(min=0).pow(2)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for k in range(3):
        step(chunks[k])
    sync()
    start, n, steps = time.perf_counter(), 0, 0
    while steps < 5 or time.perf_counter() - start < seconds:
        idx = chunks[(steps + 3) % len(chunks)]
        step(idx)
        n += len(idx)
        steps += 1
    sync()
    secs = time.perf_counter() - start
    return dict(name="train", backend=BACKEND, value=n / secs, unit="pairs/s", peak_rss_mib=rss_mib(),
                detail=f"{steps} steps of {batch} pairs, h={hidden}, GloVe-50, {secs:.1f} s")


def bench_encode(pairs, table, ids, batch, hidden, seconds):
    model = Encoder(table, hidden).to(DEVICE).eval()
    seen, questions = set(), []
    for p in pairs:
        for q in p[:2]:
            if q not in seen:
                seen.add(q)
                questions.append(q)

    def run():
        rows = sorted((ids(q) for q in questions), key=len)  # tokenization included, as ours
        with torch.no_grad():
            for i in range(0, len(rows), batch):
                model(*pad(rows[i : i + batch]))
        sync()

    run()  # warm-up (cuDNN picks its kernels on the first batches)
    start, rounds = time.perf_counter(), 0
    while rounds == 0 or time.perf_counter() - start < seconds:
        run()
        rounds += 1
    secs = time.perf_counter() - start
    return dict(name="encode", backend=BACKEND, value=rounds * len(questions) / secs, unit="sentences/s",
                peak_rss_mib=rss_mib(), detail=f"{rounds} x {len(questions)} questions, batch {batch}, {secs:.1f} s")


def bench_faiss(n, dim, queries, k):
    import faiss
    import numpy as np

    rng = np.random.default_rng(7)
    xb = rng.uniform(-1, 1, (n, dim)).astype("float32")
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    xq = rng.uniform(-1, 1, (queries, dim)).astype("float32")
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(dim)
    index.add(xb)
    index.search(xq[:8], k)
    start, rounds = time.perf_counter(), 0
    while rounds < 3 or time.perf_counter() - start < 2.0:  # as crates/bench: >= 3 rounds, >= 2 s
        index.search(xq, k)
        rounds += 1
    secs = time.perf_counter() - start
    return dict(name=f"search-{n}", backend="faiss", value=rounds * queries / secs, unit="queries/s",
                peak_rss_mib=rss_mib(), detail=f"{rounds} x {queries} queries, top-{k}, IndexFlatIP, {secs:.2f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--embeddings-dir", default="../shared/embeddings")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64, help="pairs per training step")
    ap.add_argument("--search-sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU comparison")
    ap.add_argument("--skip-search", action="store_true", help="leave out the faiss search workloads")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    global DEVICE, BACKEND
    DEVICE = torch.device(args.device)
    BACKEND = "pytorch" if DEVICE.type == "cpu" else f"torch-{DEVICE.type}"
    torch.set_num_threads(args.threads)
    pairs, table, ids = load(args.data_dir, args.embeddings_dir)
    out = [bench_train(pairs, table, ids, args.batch_size, args.hidden, args.seconds),
           bench_encode(pairs, table, ids, 256, args.hidden, args.seconds)]
    if args.skip_search:
        print("--skip-search: search comparison skipped")
    else:
        try:
            import faiss  # noqa: F401
            import numpy  # noqa: F401
            for n in [int(x) for x in args.search_sizes.split(",") if x]:
                out.append(bench_faiss(n, 128, args.queries, 10))
        except ImportError:
            print("faiss is not importable: search comparison skipped")
    for m in out:
        print(f"{m['name']:<16} {m['backend']:<8} {m['value']:>12.0f} {m['unit']}")
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
