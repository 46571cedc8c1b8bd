#!/usr/bin/env python3
"""Word vectors from the distillation teacher (issue 15), for a config's `model.extra_vectors`.

Reads the GloVe text file the config starts from and the teacher's vectors of its words (one
word per row, in the same order: what scripts/teacher-targets.sh writes for the GloVe word list),
keeps the principal components of the teacher's vectors, as many as GloVe has dimensions, and
scales them so that their root mean square value equals GloVe's. Writes a GloVe-format text file
("word v1 ... vK" per line), atomically. The trainer appends these to each word's GloVe vector.

Run by scripts/distill-targets.sh in the teacher's venv (needs numpy only):

    word_vectors.py --glove GLOVE.txt --list-words WORDS.txt      # the words, one per line
    word_vectors.py --glove GLOVE.txt --teacher WORDS.f32 --output OUT.txt [--force]

OUT.txt.json records the teacher file's payload SHA-256; an existing OUT.txt is replaced only with
--force (distill-targets.sh passes it when OUT.txt.json shows this script wrote OUT.txt).
"""
import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import teacher  # noqa: E402 - the vectors file format and atomic writes live there


class WordVectorError(Exception):
    """An error worth one line on stderr (it names the file involved)."""


def read_glove(path):
    import numpy as np

    words, rows, dim = [], [], None
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.rstrip("\r\n").split(" ")
            if len(parts) < 2:
                continue
            try:
                row = [float(x) for x in parts[1:]]
            except ValueError:
                raise WordVectorError(f"{path}:{line_no}: not a number in the vector") from None
            if dim is None:
                dim = len(row)
            elif len(row) != dim:
                raise WordVectorError(f"{path}:{line_no}: expected {dim} values, found {len(row)}")
            words.append(parts[0])
            rows.append(row)
    if not words:
        raise WordVectorError(f"{path}: no vectors")
    return words, np.asarray(rows, dtype=np.float64)


def read_teacher(path, count):
    """The rows of a teacher vectors file, checked whole by teacher.py's `verify` first."""
    import numpy as np

    try:
        teacher.verify(path)
    except teacher.TeacherError as e:
        raise WordVectorError(str(e)) from None
    with open(path, "rb") as f:
        _, rows, dim = teacher.HEADER.unpack(f.read(teacher.HEADER.size))
        if rows != count:
            raise WordVectorError(f"{path}: {rows} rows, but the GloVe file has {count} words")
        data = np.frombuffer(f.read(rows * dim * 4), dtype="<f4").reshape(rows, dim)
    if not np.isfinite(data).all():
        raise WordVectorError(f"{path}: holds a non-finite value")
    return data.astype(np.float64)


def reduce(teacher, dim, target_rms):
    """The first `dim` principal components of `teacher`, scaled to root mean square `target_rms`.
    Each component's sign is fixed (largest-magnitude entry positive), so reruns agree."""
    import numpy as np

    centred = teacher - teacher.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    basis = vt[:dim]
    flip = np.sign(basis[np.arange(dim), np.abs(basis).argmax(axis=1)])
    reduced = centred @ (basis * flip[:, None]).T
    rms = np.sqrt((reduced**2).mean())
    return reduced * (target_rms / rms)


def write_text(path, lines):
    """`lines` to `path`, atomically (teacher.py's AtomicFile)."""
    af = teacher.AtomicFile(path)
    try:
        for line in lines:
            af.write((line + "\n").encode("utf-8"))
        af.commit()
    except BaseException:
        af.discard()
        raise


def main(argv=None):
    ap = argparse.ArgumentParser(prog="word_vectors.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--glove", required=True, help="the GloVe text file the config starts from")
    ap.add_argument("--list-words", metavar="WORDS.txt", help="only write the GloVe words, one per line")
    ap.add_argument("--teacher", help="the teacher's vectors of those words, in file order")
    ap.add_argument("--output", help="GloVe-format text file to write")
    ap.add_argument("--force", action="store_true", help="replace an existing --output")
    args = ap.parse_args(argv)
    if not args.list_words and not (args.teacher and args.output):
        ap.error("give --list-words, or --teacher and --output")
    try:
        import numpy as np

        words, glove = read_glove(args.glove)
        if args.list_words:
            write_text(args.list_words, words)
            print(f"word_vectors.py: wrote {args.list_words}: {len(words)} words", file=sys.stderr)
            return 0
        out, side = Path(args.output), Path(args.output + ".json")
        if not args.force and (out.exists() or side.exists()):
            raise WordVectorError(f"{out}: already exists (pass --force to replace it)")
        taught = read_teacher(args.teacher, len(words))
        reduced = reduce(taught, glove.shape[1], float(np.sqrt((glove**2).mean())))
        write_text(out, (w + " " + " ".join(f"{v:.5f}" for v in row) for w, row in zip(words, reduced)))
        with open(args.teacher, "rb") as f:
            f.seek(-teacher.TRAILER_LEN, os.SEEK_END)
            payload = f.read(teacher.TRAILER_LEN).hex()
        meta = {"glove": str(args.glove), "teacher": str(args.teacher), "teacher_payload_sha256": payload,
                "words": len(words), "dim": int(glove.shape[1])}
        write_text(side, [json.dumps(meta, indent=2)])
    except (WordVectorError, teacher.TeacherError, OSError) as e:
        print(f"word_vectors.py: error: {e}", file=sys.stderr)
        return 1
    print(f"word_vectors.py: wrote {out}: {len(words)} words x {glove.shape[1]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
