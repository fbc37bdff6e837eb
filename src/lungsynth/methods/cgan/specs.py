"""Seed 001's conditional-GAN methods and Table V variants as plain specs (no torch import).

The workflow's rule files read these names and training steps when they build the DAG; keeping
them free of torch keeps every Snakemake start-up (and every SLURM job's) fast.
"""

from __future__ import annotations

METHODS = ("globallocal", "pix2pix", "pix2pixhd", "spade", "sean")
METHOD_NAMES = {"globallocal": "Seed 001 (DESUM + DFM)", "pix2pix": "Pix2pix",
                "pix2pixhd": "Pix2pixHD", "spade": "SPADE", "sean": "SEAN"}

_BASE = {"family": "globallocal", "fusion": "desum", "desum_source": "features", "n_local": 1, "n_scales": 2,
         "dfm": "dynamic", "dfm_source": "full", "loss": "lsgan", "d_norm": "instance", "spectral": False}
_METHODS = {
    "globallocal": {},
    "pix2pixhd": {"fusion": "sum", "dfm": "none"},
    "pix2pix": {"family": "pix2pix", "loss": "sgan", "n_scales": 1, "dfm": "none", "d_norm": "batch"},
    "spade": {"family": "spade", "loss": "hinge", "dfm": "none", "spectral": True},
    "sean": {"family": "sean", "loss": "hinge", "dfm": "none", "spectral": True},
}
VARIANTS: dict[str, tuple[str, dict]] = {
    "no_desum": ("w/o DESUM (plain sum)", {"fusion": "sum"}),
    "desum_map": ("DESUM from the label map", {"desum_source": "map"}),
    "fixed_alpha": ("fixed alpha", {"fusion": "fixed"}),
    "no_dfm": ("w/o DFM (unweighted feature matching)", {"dfm": "none"}),
    "dfm_half": ("DFM from the half-resolution D", {"dfm_source": "half"}),
    "fixed_beta": ("fixed beta", {"dfm": "fixed"}),
    "d1": ("D = 1", {"n_scales": 1}),
    "d3": ("D = 3", {"n_scales": 3}),
    "g1": ("G = 1", {"n_local": 0}),
    "g3": ("G = 3", {"n_local": 2}),
}


def method_spec(method: str, model: dict) -> dict:
    """The resolved architecture/loss spec of a method or Table V variant.

    ``model`` is the ``cgan.model`` config section (widths, depths, fixed values).
    """
    if method in _METHODS:
        spec = {**_BASE, **_METHODS[method]}
    elif method in VARIANTS:
        spec = {**_BASE, **VARIANTS[method][1]}
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS + tuple(VARIANTS))}")
    if spec["n_scales"] == 1 and spec["dfm"] != "none":
        spec["dfm"] = "none"  # one discriminator: nothing to weight
    spec["method"] = method
    spec.update({k: model[k] for k in model})
    return spec


def method_label(method: str) -> str:
    """Human-readable name of a method or variant."""
    return METHOD_NAMES.get(method) or VARIANTS[method][0]


def method_steps(spec: dict) -> tuple[str, ...]:
    """Training steps of a method: ``global, local, joint`` for global-local generators, else ``full``."""
    if spec["family"] == "globallocal" and spec["n_local"] >= 1:
        return ("global", "local", "joint")
    return ("full",)


def configured_methods(cgan: dict) -> list[str]:
    """Methods then Table V variants (not already a method) of a ``cgan`` config section, in table order."""
    return list(cgan["methods"]) + [v for v in cgan["variants"] if v not in cgan["methods"]]
