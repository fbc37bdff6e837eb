"""The one resumable training loop that every trainer uses.

A trainer builds its networks and optimisers, hands them to a :class:`TrainingLoop`
with a fingerprint of the run, and supplies a step function; the loop owns the rest:

- device selection (``auto``/``cpu``/``cuda``) and mixed precision (:class:`MixedPrecision`:
  bf16 autocast on CUDA where supported, else fp16 with a gradient scaler; nothing on CPU);
- seeding: :meth:`TrainingLoop.seed_torch` seeds weight initialisation, and
  :meth:`TrainingLoop.stream` gives the independent ``(seed, stream, index...)`` random
  streams that batch order, noise and augmentation draw from, so that a run resumed at any
  step continues exactly as the uninterrupted run would have;
- fingerprinted atomic checkpoints every ``checkpoint_every`` steps (:class:`CheckpointStore`),
  resume from the newest one written under the same fingerprint, and the per-step loss log
  (:class:`LossLog`) cut back to the resumed step;
- the progress bar, the ``stop_after`` test hook (stop as if killed) and the check that every
  reported loss is finite.

Shared by every trainer as well: :class:`LoopSettings` (the settings fields every family has),
:meth:`TrainingLoop.from_settings`, :func:`epoch_batches` and :class:`EpochOrder` (shuffled-epoch
minibatches recomputable after a resume).

A "step" is whatever the trainer's unit of work is: an optimiser step (GANs, U-Net), a
critic iteration (lung-ultrasound GANs) or an epoch (classifier, feature extractor).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import math
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lungsynth.artifacts import atomic_path, torch_load, torch_save
from lungsynth.config import SettingsFromDict
from lungsynth.runlog import progress_bar

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- device, precision, seeds


def select_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA GPU is available; set device: auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of integers (stable across runs and platforms)."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part)) % (2**63 - 1)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


class MixedPrecision:
    """Autocast and gradient scaling for one device.

    Enabled only on CUDA (``amp`` is ignored on CPU): bf16 where the GPU supports it (no scaling
    needed), else fp16 with a :class:`torch.amp.GradScaler`. Disabled, :meth:`autocast` is a no-op
    and :meth:`backward_step` is ``loss.backward(); optimiser.step()``.
    """

    def __init__(self, enabled: bool, device: torch.device) -> None:
        self.enabled = bool(enabled) and device.type == "cuda"
        self.device = device
        self.dtype = torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.enabled)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, optimiser: torch.optim.Optimizer) -> None:
        self.scaler.step(optimiser)

    def update(self) -> None:
        """Once per iteration, after the last :meth:`step`."""
        self.scaler.update()


# --------------------------------------------------------------------------- fingerprints and checkpoints

_UNFINGERPRINTED = frozenset({"checkpoint_every", "device", "amp"})


def run_fingerprint(*parts) -> str:
    """A hex digest identifying a training run: settings, data and architecture.

    ``parts`` may nest dicts, lists/tuples, dataclasses, tensors, arrays, ``nn.Module`` (its parameter
    and buffer names and shapes, not values) and scalars. Keys named ``checkpoint_every``, ``device``
    and ``amp`` are left out, since they do not change what a CPU run computes.
    """
    import numpy as np

    digest = hashlib.blake2b(digest_size=16)

    def feed(value) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, torch.nn.Module):
            value = {name: tuple(t.shape) for name, t in value.state_dict().items()}
        if isinstance(value, dict):
            digest.update(b"{")
            for key in sorted(value, key=str):
                if str(key) in _UNFINGERPRINTED:
                    continue
                digest.update(repr(key).encode())
                feed(value[key])
            digest.update(b"}")
        elif isinstance(value, (list, tuple)):
            digest.update(b"[")
            for item in value:
                feed(item)
            digest.update(b"]")
        elif isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        elif isinstance(value, np.ndarray):
            feed(torch.from_numpy(np.ascontiguousarray(value)))
        else:
            digest.update(repr(value).encode())

    for part in parts:
        feed(part)
    return digest.hexdigest()


class CheckpointStore:
    """Atomic step checkpoints ``ckpt_<step>.pt`` in a folder, keeping the newest ``keep``.

    With a ``fingerprint`` (see :func:`run_fingerprint`) every checkpoint records it, and
    :meth:`latest` discards checkpoints written under another one (changed settings, data or
    architecture), so a rerun after a config change starts afresh instead of resuming stale state.
    """

    pattern = re.compile(r"^ckpt_(\d{9})\.pt$")

    def __init__(self, folder: str | Path, keep: int = 2, fingerprint: str | None = None) -> None:
        self.folder = Path(folder)
        self.keep = keep
        self.fingerprint = fingerprint

    def steps(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        found = (self.pattern.match(p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, step: int, state: dict) -> Path:
        path = self.folder / f"ckpt_{step:09d}.pt"
        if self.fingerprint is not None:
            state = {**state, "fingerprint": self.fingerprint}
        torch_save(path, state)
        for old in self.steps()[: -self.keep]:
            (self.folder / f"ckpt_{old:09d}.pt").unlink(missing_ok=True)
        return path

    def discard(self) -> None:
        """Delete every checkpoint in the folder."""
        for step in self.steps():
            (self.folder / f"ckpt_{step:09d}.pt").unlink(missing_ok=True)

    def latest(self) -> dict | None:
        """Load the newest readable checkpoint of this fingerprint (an unreadable one is skipped with a warning)."""
        for step in reversed(self.steps()):
            path = self.folder / f"ckpt_{step:09d}.pt"
            try:
                state = torch_load(path)
            except Exception as exc:  # a corrupt file from a crash outside our atomic writes
                log.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
                continue
            if self.fingerprint is not None and state.get("fingerprint") != self.fingerprint:
                log.warning("checkpoints in %s were written for other settings, data or code; discarding them "
                            "and training from step 0", self.folder)
                self.discard()
                return None
            return state
        return None


def discard_checkpoints(work_dir: str | Path) -> None:
    """Delete the checkpoints of a finished run in ``work_dir`` (once its outputs are written)."""
    CheckpointStore(Path(work_dir) / "checkpoints").discard()


class LossLog:
    """Per-step CSV of losses that survives kills: rows past a resumed step are dropped."""

    def __init__(self, path: str | Path, columns: tuple[str, ...]) -> None:
        self.path = Path(path)
        self.columns = columns

    def restart_at(self, step: int) -> None:
        """Keep only rows with ``step < step`` (those the checkpoint covers)."""
        rows: list[list[str]] = []
        if self.path.exists():
            with open(self.path, newline="") as handle:
                reader = csv.reader(handle)
                next(reader, None)
                for row in reader:
                    if len(row) == len(self.columns):
                        try:
                            if int(row[0]) < step:
                                rows.append(row)
                        except ValueError:
                            continue
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.columns)
            writer.writerows(rows)

    def append(self, rows: list[tuple]) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerows(rows)


class Value:
    """A plain value (numbers, strings, lists and dicts of them, tensors) checkpointed beside the networks."""

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.value = state["value"]


# --------------------------------------------------------------------------- the loop


@dataclass
class Step:
    """What a step function reports.

    ``row``: the loss-log row of this step (first column the step index), or ``None`` when the
    loop keeps no loss log; ``losses``: named losses that must be finite; ``postfix``: shown on the
    progress bar.
    """

    row: tuple | None = None
    losses: Mapping[str, float] = field(default_factory=dict)
    postfix: Mapping[str, str] | None = None


@dataclass
class LoopResult:
    """How a :meth:`TrainingLoop.run` ended: ``stopped`` (by ``stop_after``) at ``step`` of ``total``."""

    stopped: bool
    step: int
    total: int
    resumed_from: int | None
    loss_csv: str | None


@dataclass
class LoopSettings(SettingsFromDict):
    """Settings every trainer on :class:`TrainingLoop` takes; each family's settings extend these.

    ``batch_size``: images per step; ``checkpoint_every``: steps between checkpoints; ``seed``: of
    initialisation and every random stream; ``amp``: mixed precision on CUDA; ``device``: ``auto``,
    ``cpu`` or ``cuda``. Defaults equal the schema's (``tests/test_settings.py`` ties them).
    """

    batch_size: int = 16
    checkpoint_every: int = 100
    seed: int = 0
    amp: bool = True
    device: str = "auto"


class EpochOrder:
    """Minibatch ``k`` of a shuffled-epoch schedule: ``(epoch, rows)`` with ``epoch, i = divmod(k, per_epoch)``.

    ``rows`` (long tensor, at most ``batch`` indices into ``0 .. n - 1``) is slice ``i`` of the
    epoch's permutation ``randperm(n)`` drawn from the stream ``(seed, stream, epoch)``, so any
    minibatch can be recomputed after a resume. The current epoch's permutation is cached.
    """

    def __init__(self, seed: int, n: int, batch: int, per_epoch: int, stream: int = 1) -> None:
        self.seed, self.n, self.batch, self.per_epoch, self.stream = seed, n, batch, per_epoch, stream
        self._epoch: int | None = None
        self._perm: torch.Tensor | None = None

    def __call__(self, k: int) -> tuple[int, torch.Tensor]:
        epoch, index = divmod(k, self.per_epoch)
        if epoch != self._epoch:
            self._perm = torch.randperm(self.n, generator=seeded_generator(self.seed, self.stream, epoch))
            self._epoch = epoch
        return epoch, self._perm[index * self.batch : (index + 1) * self.batch]


def epoch_batches(n: int, batch_size: int, what: str) -> tuple[int, int]:
    """``(batch, steps per epoch)`` for ``n`` training items: ``batch = min(batch_size, n)``, at least one step.

    ``n == 0`` is an error saying there are no training ``what``.
    """
    if n == 0:
        raise ValueError(f"no training {what}")
    batch = min(batch_size, n)
    return batch, max(1, n // batch)


class TrainingLoop:
    """Run ``total`` steps of a step function with checkpoints, resume, loss log and progress bar.

    Args:
        work_dir: folder of ``checkpoints/`` and the live ``losses.csv``; ``None`` trains in
            memory (no checkpoints, no resume; for library calls and tests).
        total: number of steps of the whole run.
        seed: seed of :meth:`seed_torch` and :meth:`stream`.
        device: ``auto``, ``cpu`` or ``cuda`` (see :func:`select_device`).
        amp: mixed precision on CUDA (see :class:`MixedPrecision`).
        checkpoint_every: steps between checkpoints (the last step always checkpoints).
        loss_columns: columns of ``losses.csv`` (``None``: no loss log).
        desc, unit: progress-bar label and step unit (``unit`` also names the step in messages).
        progress: show the progress bar.
        stop_after: stop after this many steps of this call, as if killed (tests).
        keep: checkpoints kept on disk.
    """

    def __init__(self, work_dir: str | Path | None, *, total: int, seed: int, device: str = "auto",
                 amp: bool = True, checkpoint_every: int = 1, loss_columns: tuple[str, ...] | None = None,
                 desc: str = "train", unit: str = "step", progress: bool = True, stop_after: int | None = None,
                 keep: int = 2) -> None:
        if total < 0 or checkpoint_every < 1:
            raise ValueError(f"need total >= 0 and checkpoint_every >= 1, got {total} and {checkpoint_every}")
        self.work_dir = None if work_dir is None else Path(work_dir)
        self.total = int(total)
        self.seed = int(seed)
        self.device = select_device(device)
        self.precision = MixedPrecision(amp, self.device)
        self.checkpoint_every = int(checkpoint_every)
        self.desc, self.unit = desc, unit
        self.progress, self.stop_after, self.keep = progress, stop_after, keep
        self.losses = (LossLog(self.work_dir / "losses.csv", loss_columns)
                       if loss_columns is not None and self.work_dir is not None else None)
        self.state: dict[str, Any] = {}
        self.store: CheckpointStore | None = None
        self.start = 0
        self.resumed_from: int | None = None

    @classmethod
    def from_settings(cls, work_dir: str | Path | None, settings: LoopSettings, *, total: int,
                      **options: Any) -> TrainingLoop:
        """A loop with the seed, device, amp and ``checkpoint_every`` of ``settings``; ``options`` as in the constructor."""
        return cls(work_dir, total=total, seed=settings.seed, device=settings.device, amp=settings.amp,
                   checkpoint_every=settings.checkpoint_every, **options)

    def seed_torch(self) -> None:
        """Seed torch's global generator with ``seed`` (weight initialisation, dropout)."""
        torch.manual_seed(self.seed)

    def stream(self, stream: int, *index: int) -> torch.Generator:
        """The random stream ``(seed, stream, *index)``: independent of every other and of the step it is drawn in."""
        return seeded_generator(self.seed, stream, *index)

    def epoch_order(self, n: int, batch: int, per_epoch: int, stream: int = 1) -> EpochOrder:
        """Shuffled minibatches of ``n`` items, the permutation of each epoch drawn from ``(seed, stream, epoch)``."""
        return EpochOrder(self.seed, n, batch, per_epoch, stream)

    def resume(self, state: Mapping[str, Any], fingerprint: str) -> int:
        """Register what a checkpoint holds and load the newest one of ``fingerprint``; return the start step.

        ``state`` maps names to objects with ``state_dict``/``load_state_dict`` (networks, optimisers,
        schedulers, :class:`Value`) or ``None`` (recorded as ``None``).
        """
        self.state = dict(state)
        if self.work_dir is not None:
            self.store = CheckpointStore(self.work_dir / "checkpoints", keep=self.keep, fingerprint=fingerprint)
            saved = self.store.latest()
            if saved is not None:
                for name, obj in self.state.items():
                    if obj is not None:
                        obj.load_state_dict(saved[name])
                self.start = self.resumed_from = int(saved["step"])
                log.info("resuming from checkpoint at %s %d of %d", self.unit, self.start, self.total)
        if self.losses is not None:
            self.losses.restart_at(self.start)
        return self.start

    def _checkpoint(self, step: int, pending: list[tuple]) -> None:
        if self.losses is not None:
            self.losses.append(pending)
        pending.clear()
        if self.store is not None:
            self.store.save(step, {"step": step, **{name: None if obj is None else obj.state_dict()
                                                     for name, obj in self.state.items()}})

    def run(self, step_fn: Callable[[int], Step]) -> LoopResult:
        """Run steps ``start .. total - 1`` (call :meth:`resume` first)."""
        pending: list[tuple] = []
        bar = progress_bar(range(self.start, self.total), initial=self.start, total=self.total, desc=self.desc,
                           unit=self.unit, disable=not self.progress)
        try:
            for step in bar:
                out = step_fn(step)
                bad = {k: v for k, v in out.losses.items() if not math.isfinite(v)}
                if bad:
                    shown = ", ".join(f"{k}={v}" for k, v in out.losses.items())
                    raise FloatingPointError(f"{self.desc}: non-finite loss at {self.unit} {step}: {shown}")
                if out.row is not None:
                    pending.append(out.row)
                if out.postfix:
                    bar.set_postfix(out.postfix, refresh=False)
                done = step + 1
                if done % self.checkpoint_every == 0 or done == self.total:
                    self._checkpoint(done, pending)
                if self.stop_after is not None and done - self.start >= self.stop_after:
                    return LoopResult(True, done, self.total, self.resumed_from, self._loss_csv())
        finally:
            bar.close()
        return LoopResult(False, self.total, self.total, self.resumed_from, self._loss_csv())

    def _loss_csv(self) -> str | None:
        return None if self.losses is None else str(self.losses.path)
