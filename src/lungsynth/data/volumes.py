"""Axial-slice stacks <-> NIfTI images, in one documented orientation.

lungsynth holds CT volumes as ``(S, H, W)`` stacks of axial slices in
radiological display orientation: row 0 is anterior, column 0 is the patient's
right, slice 0 is the most inferior slice. NIfTI files are written in
canonical RAS+ voxel order (index ``i`` grows towards the patient's right,
``j`` towards anterior, ``k`` towards superior) and read back
through ``nibabel.as_closest_canonical``, so files in any orientation load the
same way.

An image and its mask are on the same voxel grid when their canonical shapes
and canonical affines agree (:func:`grid_mismatch`): translation within
:data:`AFFINE_TRANSLATION_TOL_MM` (1e-3 mm), voxel spacing (column norms of the
3x3 part, mm) and direction cosines (the normalised columns) within
:data:`AFFINE_LINEAR_TOL` (1e-4). The tolerances absorb the float32 storage
of NIfTI headers (sform rows, qform quaternions), not real differences.
"""

from __future__ import annotations

import numpy as np

AFFINE_TRANSLATION_TOL_MM: float = 1e-3
"""Largest origin difference (mm) of two canonical affines on the same grid."""
AFFINE_LINEAR_TOL: float = 1e-4
"""Largest spacing (mm) and direction-cosine difference of two canonical affines on the same grid."""


def stack_to_nifti(stack: np.ndarray, spacing_mm: tuple[float, float, float]):
    """Wrap an ``(S, H, W)`` display-oriented stack in a RAS+ ``Nifti1Image``.

    ``spacing_mm`` is ``(row, column, slice)`` spacing in millimetres. The
    affine is diagonal and positive (RAS+): world x grows towards the
    patient's right, y towards anterior, z towards superior.
    """
    import nibabel as nib

    row_mm, col_mm, slice_mm = spacing_mm
    # display[s, r, c] -> data[i, j, k]: i runs patient left->right (RAS +x),
    # so i = W-1-c; j runs posterior->anterior (+y), so j = H-1-r; k = s.
    data = np.ascontiguousarray(stack[:, ::-1, ::-1].transpose(2, 1, 0))
    affine = np.diag([col_mm, row_mm, slice_mm, 1.0])
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    return image


def nifti_to_stack(image) -> np.ndarray:
    """Return an ``(S, H, W)`` display-oriented stack from any 3-D NIfTI image.

    The array keeps the file's stored dtype after scaling (``get_fdata`` is not
    used so that label maps stay integer); 4-D images with a singleton last
    axis are squeezed.
    """
    return nifti_to_stack_and_affine(image)[0]


def nifti_to_stack_and_affine(image) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nifti_to_stack` plus the 4x4 affine of the canonical (RAS+ voxel order) image.

    The affine maps canonical voxel indices ``(i, j, k)`` to world mm; two
    files whose canonical affines agree (:func:`grid_mismatch`) put the same
    stack index on the same point of the patient, whatever order each stored
    its voxels in.
    """
    import nibabel as nib

    canonical = nib.as_closest_canonical(image)
    data = np.asanyarray(canonical.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"expected a 3-D volume, got shape {data.shape}")
    stack = np.ascontiguousarray(data.transpose(2, 1, 0)[:, ::-1, ::-1])
    return stack, np.asarray(canonical.affine, dtype=float)


def grid_mismatch(affine: np.ndarray, reference: np.ndarray) -> str | None:
    """What differs between canonical ``affine`` and ``reference`` (``None`` when they describe the same grid).

    The text gives ``affine``'s values first ("... (mask) vs (image)").

    Spacing and direction cosines are compared within :data:`AFFINE_LINEAR_TOL`,
    the origin within :data:`AFFINE_TRANSLATION_TOL_MM` mm.
    """
    a = np.asarray(affine, dtype=float)
    b = np.asarray(reference, dtype=float)
    spacing_a = np.linalg.norm(a[:3, :3], axis=0)
    spacing_b = np.linalg.norm(b[:3, :3], axis=0)
    problems = []
    if not np.allclose(spacing_a, spacing_b, rtol=0.0, atol=AFFINE_LINEAR_TOL):
        problems.append(f"voxel spacing {_fmt(spacing_a)} mm vs {_fmt(spacing_b)} mm")
    dirs_a = a[:3, :3] / np.where(spacing_a > 0, spacing_a, 1.0)
    dirs_b = b[:3, :3] / np.where(spacing_b > 0, spacing_b, 1.0)
    if not np.allclose(dirs_a, dirs_b, rtol=0.0, atol=AFFINE_LINEAR_TOL):
        problems.append("voxel axis directions differ (mirrored, rotated or permuted axes)")
    if not np.allclose(a[:3, 3], b[:3, 3], rtol=0.0, atol=AFFINE_TRANSLATION_TOL_MM):
        problems.append(f"origin {_fmt(a[:3, 3])} mm vs {_fmt(b[:3, 3])} mm")
    return "; ".join(problems) or None


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"
