"""Time a no-op ``snakemake -n`` on an ingested image_folder dataset of many tiny files.

The ingest rule digests the dataset's file listing at every Snakemake start
(``params.content``, :func:`lungsynth.data.listing.dataset_fingerprint`).
This writes ``--files`` tiny PNGs (two class folders) in a temporary folder,
runs ingest once, then times the fingerprint itself and a no-op dry run, which
must say "Nothing to be done", and checks that touching one file plans ingest.

    .venv/bin/python benchmarks/ingest_noop.py              # 10,000 files
    .venv/bin/python benchmarks/ingest_noop.py --files 2000 --keep
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from lungsynth.data.listing import dataset_fingerprint  # noqa: E402

CONFIG = """\
datasets:
  many:
    format: image_folder
    path: data
    classes: {covid: CT_COVID, noncovid: CT_NonCOVID}
    split: {fractions: {train: 0.6, val: 0.2, test: 0.2}}
dcgan: {enabled: false, dataset: many}
lusgan: {enabled: false, dataset: many}
cgan: {enabled: false, dataset: many}
classifier: {dataset: many}
ablation: {segmentation: {enabled: false}, classifier: {enabled: false}}
"""
TARGET = "results/many/ingest/manifest.csv"


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (4, 4), color=128).save(buffer, format="PNG")
    return buffer.getvalue()


def write_dataset(root: Path, n_files: int) -> None:
    data = _png()
    for i in range(n_files):
        folder = root / ("CT_COVID" if i % 2 else "CT_NonCOVID")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{i:05d}.png").write_bytes(data)


def snakemake(workdir: Path, *args: str) -> tuple[float, str, int]:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--cores", "1", *args, TARGET, "--configfile", str(workdir / "config.yaml")]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=workdir,
                          env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    return time.perf_counter() - start, done.stdout + done.stderr, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="number of tiny image files")
    parser.add_argument("--repeats", type=int, default=3, help="timed no-op dry runs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ingest_noop_"))
    try:
        (workdir / "config.yaml").write_text(CONFIG)
        start = time.perf_counter()
        write_dataset(workdir / "data", args.files)
        print(f"wrote {args.files} files in {time.perf_counter() - start:.1f} s under {workdir / 'data'}")

        seconds, output, rc = snakemake(workdir)
        if rc:
            raise SystemExit(f"first run failed:\n{output[-3000:]}")
        print(f"first run (ingest): {seconds:.1f} s")

        spec = {"format": "image_folder", "classes": {"covid": "CT_COVID", "noncovid": "CT_NonCOVID"}}
        times = []
        for _ in range(5):
            start = time.perf_counter()
            dataset_fingerprint(workdir / "data", spec, exclude=[workdir / "results"])
            times.append(time.perf_counter() - start)
        print(f"dataset_fingerprint: {statistics.median(times):.3f} s (median of 5, {args.files} files)")

        noop = []
        for _ in range(args.repeats):
            seconds, output, rc = snakemake(workdir, "-n")
            if rc or "Nothing to be done" not in output:
                raise SystemExit(f"the no-op dry run planned work or failed:\n{output[-3000:]}")
            noop.append(seconds)
        print(f"no-op snakemake -n: {statistics.median(noop):.2f} s (median of {args.repeats}; "
              f"min {min(noop):.2f}, max {max(noop):.2f}), 'Nothing to be done'")

        touched = workdir / "data" / "CT_COVID" / "img00001.png"
        st = touched.stat()
        os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        seconds, output, rc = snakemake(workdir, "-n")
        if rc or "Params have changed" not in output:
            raise SystemExit(f"touching one file did not plan ingest:\n{output[-3000:]}")
        print(f"after touching one file, snakemake -n plans ingest ({seconds:.2f} s)")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
