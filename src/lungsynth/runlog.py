"""Logging for workflow jobs: everything to the job's log file, errors also to the terminal."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from lungsynth.errors import LungsynthError


@contextlib.contextmanager
def job_log(path: str | Path | None, threads: int | None = None) -> Iterator[logging.Logger]:
    """Send logging and stderr (progress bars) to ``path``; on failure print the reason to the terminal.

    A :class:`~lungsynth.errors.LungsynthError` (bad input or config) is shown as
    one line naming the file; other exceptions with their traceback (in the log).
    ``threads`` caps torch's intra-op threads to the job's allocation.
    """
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    terminal = sys.stderr
    handle = open(path, "w", buffering=1) if path else None  # noqa: SIM115
    if handle is not None:
        sys.stderr = handle
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    try:
        yield logging.getLogger("lungsynth")
    except LungsynthError as exc:
        logging.getLogger("lungsynth").error("%s", exc)
        print(f"lungsynth error: {exc}", file=terminal)
        raise SystemExit(1) from None
    except BaseException:
        traceback.print_exc()
        if handle is not None:
            print(f"lungsynth: job failed, traceback in {path}", file=terminal)
        raise
    finally:
        if handle is not None:
            sys.stderr = terminal
            handle.close()


class _LineStream:
    """File wrapper for progress bars in log files: each refresh becomes one line (no carriage returns)."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, *, desc: str, unit: str = "it", disable: bool = False, **kwargs):
    """A tqdm progress bar on stderr: live on a terminal, one line every 15 s in a log file."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(
        iterable,
        desc=desc,
        unit=unit,
        disable=disable,
        file=sys.stderr if interactive else _LineStream(sys.stderr),
        mininterval=0.5 if interactive else 15.0,
        dynamic_ncols=interactive,
        **kwargs,
    )


def prepend_pythonpath(folder: str | Path) -> None:
    """Put ``folder`` first on ``$PYTHONPATH`` (once), so that job processes started from here import it.

    The workflow calls it with the checkout's ``src/``: local jobs, jobs in per-stage conda
    environments and SLURM jobs (which inherit the submitting environment) then import this
    ``lungsynth`` without installing it.
    """
    import os

    folder = str(folder)
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != folder]
    os.environ["PYTHONPATH"] = os.pathsep.join([folder, *rest])

