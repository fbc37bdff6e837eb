"""Differentiable augmentation of GAN critic inputs (DiffAugment, Zhao et al. 2020) and an
ADA-style controller of its probability (Karras et al. 2020).

With a few hundred training images the critic memorises the real set. DiffAugment applies
random, differentiable transforms drawn from one distribution to every batch the critic sees,
real and fake alike, in the critic step and in the generator step (gradients flow through the
transforms into the generator). The critic cannot tell real from fake by the transforms, and the
generator is not rewarded for producing augmented-looking images as long as the augmented
distribution still determines the clean one ("non-leaking"): ADA shows this for a wide class of
ops applied with probability ``p < 1`` (in practice ``p`` up to about 0.8 is safe); DiffAugment
uses these ops at ``p = 1``.

Ops (all on ``(B, C, H, W)`` float images in ``[-1, 1]``, per sample, integer pixel geometry):

- ``translation``: shift by up to ``translation_ratio`` of each side (integer pixels, uniform
  in ``[-s, s]``, ``s = round(ratio * side)``); the uncovered border is filled with ``fill``
  (default ``-1``, the black background of CT and ultrasound images, not DiffAugment's 0,
  which would be mid-grey in this range);
- ``cutout``: a rectangle of ``cutout_ratio`` of each side (``round(ratio * side)`` pixels),
  centred at a uniform pixel (so it may be clipped by the border), set to ``fill``;
- ``brightness``: add ``(U(0, 1) - 0.5) * brightness_strength`` (default ``U(-0.5, 0.5)``);
- ``contrast``: scale each sample's deviation from its own mean (over C, H, W) by
  ``U(contrast_range)`` (default ``U(0.5, 1.5)``).

``color`` in a policy means ``brightness,contrast``; DiffAugment's saturation op is left out
(the images are grey-scale, where it is the identity). Outputs may leave ``[-1, 1]`` (as in
DiffAugment; the critic only sees them), they are not clamped, since clamping kills gradients.

Randomness: every parameter is drawn on the CPU from the explicit ``generator`` (then moved to
the data's device), in policy order, always the same amount whatever ``p`` and the device, so
one generator state gives one set of parameters everywhere, and ``p`` only decides which of the
same draws are applied (a sample augmented at ``p`` is also augmented at any larger ``p``).
The caller draws one fresh generator per call, for example ``loop.stream(k, step)`` for the
real batch and ``loop.stream(k + 1, step)`` for the fake batch: real and fake then get
independent parameters from the same distribution, and a resumed run redraws the same ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, overload

import torch

OPS = ("translation", "cutout", "brightness", "contrast")
"""The ops a policy may name (plus the alias ``color`` = ``brightness,contrast``)."""

GEOMETRIC_OPS = frozenset({"translation", "cutout"})
"""Ops that move or hide pixels; the only ones applied to ``extra`` tensors."""

_ALIASES = {"color": ("brightness", "contrast")}


def parse_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
    """The ops of ``policy`` in order: a comma-separated string (``"translation,cutout,color"``;
    blanks ignored, ``""`` is no op) or a sequence of names; ``color`` expands to ``brightness,contrast``.

    Raises ``ValueError`` on an unknown name.
    """
    names = policy.split(",") if isinstance(policy, str) else list(policy)
    ops: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name in _ALIASES:
            ops.extend(_ALIASES[name])
        elif name in OPS:
            ops.append(name)
        else:
            raise ValueError(f"unknown DiffAugment op {raw!r}; choose from {', '.join((*OPS, *_ALIASES))}")
    return tuple(ops)


# --------------------------------------------------------------------------- the ops (deterministic given parameters)


def translation(x: torch.Tensor, shift: torch.Tensor, fill: float = -1.0) -> torch.Tensor:
    """Shift each sample by whole pixels, filling the uncovered border with ``fill``.

    Args:
        x: ``(B, C, H, W)`` tensor (any dtype; a label map works too).
        shift: ``(B, 2)`` integer tensor ``(dy, dx)``: content moves down / right by positive
            values; ``(0, 0)`` returns the sample unchanged (bit-exact).
        fill: value of the pixels shifted in.
    Returns:
        ``(B, C, H, W)``, same dtype; differentiable in ``x`` (gradient 1 at source pixels that stay
        inside, 0 at those shifted out).
    """
    batch, channels, height, width = x.shape
    shift = shift.to(device=x.device, dtype=torch.long)
    rows = torch.arange(height, device=x.device)[None, :] - shift[:, 0:1]  # (B, H) source row of each output row
    cols = torch.arange(width, device=x.device)[None, :] - shift[:, 1:2]  # (B, W)
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    index = rows.clamp(0, height - 1)[:, :, None] * width + cols.clamp(0, width - 1)[:, None, :]  # (B, H, W)
    index = index.reshape(batch, 1, height * width).expand(batch, channels, height * width)
    moved = x.reshape(batch, channels, height * width).gather(2, index).reshape(x.shape)
    return torch.where(inside[:, None], moved, torch.as_tensor(fill, dtype=x.dtype, device=x.device))


def cutout(x: torch.Tensor, box: torch.Tensor, fill: float = -1.0) -> torch.Tensor:
    """Set one rectangle per sample to ``fill``.

    Args:
        x: ``(B, C, H, W)`` tensor (any dtype).
        box: ``(B, 4)`` integer tensor ``(top, left, height, width)`` in pixels, clipped to the
            image (it may start at a negative offset); height or width 0 leaves the sample unchanged.
        fill: value written into the rectangle (all channels).
    Returns:
        ``(B, C, H, W)``, same dtype; differentiable in ``x`` (gradient 0 inside the rectangle).
    """
    _, _, height, width = x.shape
    box = box.to(device=x.device, dtype=torch.long)
    rows = torch.arange(height, device=x.device)[None, :]
    cols = torch.arange(width, device=x.device)[None, :]
    in_rows = (rows >= box[:, 0:1]) & (rows < box[:, 0:1] + box[:, 2:3])  # (B, H)
    in_cols = (cols >= box[:, 1:2]) & (cols < box[:, 1:2] + box[:, 3:4])  # (B, W)
    hole = in_rows[:, :, None] & in_cols[:, None, :]
    return torch.where(hole[:, None], torch.as_tensor(fill, dtype=x.dtype, device=x.device), x)


def brightness(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``x + delta`` per sample; ``delta``: ``(B,)`` offsets in image units (0 = unchanged, bit-exact)."""
    return x + delta.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each sample's deviation from its mean over ``(C, H, W)`` by ``factor`` ``(B,)``.

    Computed as ``x + (factor - 1) * (x - mean)``, so ``factor == 1`` is bit-exact identity.
    """
    factor = factor.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
    return x + (factor - 1) * (x - x.mean(dim=(1, 2, 3), keepdim=True))


# --------------------------------------------------------------------------- the sampled pipeline


def _side(ratio: float, side: int) -> int:
    return int(math.floor(ratio * side + 0.5))


@overload
def diff_augment(x: torch.Tensor, policy: str | Sequence[str], generator: torch.Generator, p: float = 1.0, *,
                 extra: None = None, extra_fill: float | Sequence[float] = 0.0, fill: float = -1.0,
                 translation_ratio: float = 0.125, cutout_ratio: float = 0.5, brightness_strength: float = 1.0,
                 contrast_range: tuple[float, float] = (0.5, 1.5)) -> torch.Tensor: ...


@overload
def diff_augment(x: torch.Tensor, policy: str | Sequence[str], generator: torch.Generator, p: float = 1.0, *,
                 extra: Sequence[torch.Tensor], extra_fill: float | Sequence[float] = 0.0, fill: float = -1.0,
                 translation_ratio: float = 0.125, cutout_ratio: float = 0.5, brightness_strength: float = 1.0,
                 contrast_range: tuple[float, float] = (0.5, 1.5)) -> tuple[torch.Tensor, list[torch.Tensor]]: ...


def diff_augment(
    x: torch.Tensor,
    policy: str | Sequence[str],
    generator: torch.Generator,
    p: float = 1.0,
    *,
    extra: Sequence[torch.Tensor] | None = None,
    extra_fill: float | Sequence[float] = 0.0,
    fill: float = -1.0,
    translation_ratio: float = 0.125,
    cutout_ratio: float = 0.5,
    brightness_strength: float = 1.0,
    contrast_range: tuple[float, float] = (0.5, 1.5),
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Apply each op of ``policy`` in order to each sample with probability ``p``.

    Args:
        x: ``(B, C, H, W)`` float images in ``[-1, 1]`` (real or generated; gradients flow through).
        policy: ops, e.g. ``"translation,cutout,color"`` (see :func:`parse_policy`); ``""``: none.
        generator: CPU ``torch.Generator``, the only source of randomness (one fresh one per call).
        p: probability in ``[0, 1]`` that an op is applied to a sample, drawn per op and sample
            (``0``: identity, ``1``: always; e.g. :attr:`AdaptiveProbability.p`).
        extra: tensors ``(B, K, H, W)`` (any dtype, e.g. a one-hot label map of the conditional GAN)
            that get exactly the same geometric ops (translation, cutout) as ``x`` and no intensity
            op, so that map and image stay aligned.
        extra_fill: fill of the border and cutout of the ``extra`` tensors, one value for all or
            one per tensor (default 0: no class in a one-hot map).
        fill: fill of the border and cutout of ``x`` (default -1, the background).
        translation_ratio: largest shift as a share of each side (DiffAugment: 1/8).
        cutout_ratio: cutout side as a share of each side (DiffAugment: 1/2).
        brightness_strength: brightness offsets are uniform in ``[-s/2, s/2]``.
        contrast_range: contrast factors are uniform in this range.
    Returns:
        The augmented ``x`` (same shape and dtype) or, when ``extra`` is given,
        ``(x, [augmented extra tensors])``.
    """
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"expected a float (B, C, H, W) tensor, got {tuple(x.shape)} {x.dtype}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"augmentation probability must be in [0, 1], got {p}")
    ops = parse_policy(policy)
    batch, _, height, width = x.shape
    extras = list(extra) if extra is not None else []
    for t in extras:
        if t.dim() != 4 or t.shape[0] != batch or t.shape[2:] != x.shape[2:]:
            raise ValueError(f"extra tensor of shape {tuple(t.shape)} does not match images {tuple(x.shape)}")
    fills = [float(extra_fill)] * len(extras) if isinstance(extra_fill, (int, float)) else [float(f) for f in extra_fill]
    if len(fills) != len(extras):
        raise ValueError(f"{len(fills)} extra_fill values for {len(extras)} extra tensors")

    for op in ops:
        applied = torch.rand(batch, generator=generator) < p
        if op == "translation":
            max_dy, max_dx = _side(translation_ratio, height), _side(translation_ratio, width)
            dy = torch.randint(-max_dy, max_dy + 1, (batch,), generator=generator)
            dx = torch.randint(-max_dx, max_dx + 1, (batch,), generator=generator)
            shift = torch.stack([dy, dx], dim=1) * applied[:, None]
            x = translation(x, shift, fill)
            extras = [translation(t, shift, f) for t, f in zip(extras, fills)]
        elif op == "cutout":
            size_y, size_x = _side(cutout_ratio, height), _side(cutout_ratio, width)
            centre_y = torch.randint(0, height, (batch,), generator=generator)
            centre_x = torch.randint(0, width, (batch,), generator=generator)
            box = torch.stack([centre_y - size_y // 2, centre_x - size_x // 2,
                               torch.full((batch,), size_y), torch.full((batch,), size_x)], dim=1)
            box[:, 2:] *= applied[:, None]
            x = cutout(x, box, fill)
            extras = [cutout(t, box, f) for t, f in zip(extras, fills)]
        elif op == "brightness":
            delta = (torch.rand(batch, generator=generator) - 0.5) * brightness_strength
            x = brightness(x, torch.where(applied, delta, 0.0))
        else:  # contrast
            low, high = contrast_range
            factor = low + (high - low) * torch.rand(batch, generator=generator)
            x = contrast(x, torch.where(applied, factor, 1.0))
    return (x, extras) if extra is not None else x


# --------------------------------------------------------------------------- adaptive probability (ADA)


class AdaptiveProbability:
    """The augmentation probability ``p`` of ADA (Karras et al. 2020), steered by an overfitting heuristic.

    Every call of :meth:`update` adds the critic's raw outputs on (augmented) real images; every
    ``adjust_every`` calls the heuristic ``r_t = E[sign(D(real))]`` over those outputs is compared
    with ``target``, and ``p`` moves by ``sign(r_t - target) * images / speed`` (``images``: real
    images seen since the last adjustment, ``batch * adjust_every`` for a constant batch), clamped
    to ``[0, 1]``. ``r_t`` near 1 means the critic is sure of every real image: overfitting.

    The outputs must be raw logits whose sign means "real" (positive) or "fake": right for
    ``sgan``/``hinge``/``rsgan``-style critics; for ``lsgan`` with targets 0/1 pass
    ``logits - 0.5``. Patch critics' outputs ``(B, ...)`` count every output, one image per row.

    Args:
        target: the value of ``r_t`` to hold, in ``(0, 1]`` (ADA: 0.6).
        adjust_every: calls between adjustments (ADA: 4 minibatches).
        speed: images it takes ``p`` to go from 0 to 1 (ADA: 500 000; with a few hundred images
            and short runs pick far fewer, e.g. a tenth of the run's images).
        p: the starting probability in ``[0, 1]``.

    State (:meth:`state_dict`, plain ints and floats) is checkpointed beside the networks, so a
    resumed run reproduces the same ``p`` sequence bit for bit.
    """

    def __init__(self, target: float = 0.6, adjust_every: int = 4, speed: int = 500_000, p: float = 0.0) -> None:
        if not 0.0 < target <= 1.0 or adjust_every < 1 or speed <= 0 or not 0.0 <= p <= 1.0:
            raise ValueError(f"need 0 < target <= 1, adjust_every >= 1, speed > 0 and 0 <= p <= 1, "
                             f"got {target}, {adjust_every}, {speed}, {p}")
        self.target = float(target)
        self.adjust_every = int(adjust_every)
        self.speed = int(speed)
        self.p = float(p)
        self.estimate: float | None = None  # r_t of the last adjustment (for logging)
        self._calls = 0
        self._sign_sum = 0
        self._outputs = 0
        self._images = 0

    @torch.no_grad()
    def update(self, real_logits: torch.Tensor) -> None:
        """Accumulate the critic's raw outputs on real images ``(B,)`` or ``(B, ...)``; adjust ``p`` every ``adjust_every`` calls.

        Reads one integer back from the device per call (the sum of signs).
        """
        if real_logits.dim() == 0 or real_logits.numel() == 0:
            raise ValueError(f"expected critic outputs of shape (B,) or (B, ...), got {tuple(real_logits.shape)}")
        self._sign_sum += int(torch.sign(real_logits.detach()).sum().item())
        self._outputs += real_logits.numel()
        self._images += real_logits.shape[0]
        self._calls += 1
        if self._calls % self.adjust_every == 0:
            self.estimate = self._sign_sum / self._outputs
            direction = (self.estimate > self.target) - (self.estimate < self.target)
            self.p = min(max(self.p + direction * self._images / self.speed, 0.0), 1.0)
            self._sign_sum = self._outputs = self._images = 0

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "estimate": self.estimate, "calls": self._calls, "sign_sum": self._sign_sum,
                "outputs": self._outputs, "images": self._images}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.p = float(state["p"])
        self.estimate = None if state["estimate"] is None else float(state["estimate"])
        self._calls = int(state["calls"])
        self._sign_sum = int(state["sign_sum"])
        self._outputs = int(state["outputs"])
        self._images = int(state["images"])
