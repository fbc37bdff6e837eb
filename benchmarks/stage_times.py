"""Print per-stage wall time and peak memory of a finished workflow run.

Reads the ``benchmark:`` files Snakemake wrote under ``results/benchmarks/``
(one TSV per job) and prints one row per job plus the sum of job times; pass the
run's measured wall time (e.g. from ``/usr/bin/time``) to print the share of it
spent in jobs (the rest is Snakemake start-up and scheduling).

    python benchmarks/stage_times.py results/benchmarks --wall-seconds 290
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lungsynth.report.build import stage_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("results/benchmarks"))
    parser.add_argument("--wall-seconds", type=float, default=None, help="measured wall time of the whole run")
    args = parser.parse_args()
    table = stage_table(sorted(args.folder.glob("**/*.tsv")))
    if table.empty:
        raise SystemExit(f"no benchmark files under {args.folder}; run the workflow first")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    total = table["seconds"].sum()
    print(f"\nsum of job times: {total:.1f} s; peak job memory: {table['max RSS (MB)'].max():.0f} MB")
    if args.wall_seconds:
        print(f"wall time: {args.wall_seconds:.1f} s; jobs ran {total / args.wall_seconds:.2f}x the wall time "
              "(>1 means jobs overlapped on the cores)")


if __name__ == "__main__":
    main()
