"""Axial-slice stacks <-> NIfTI images, in one documented orientation.

lungsynth holds CT volumes as ``(S, H, W)`` stacks of axial slices in
radiological display orientation: row 0 is anterior, column 0 is the patient's
right, slice 0 is the most inferior slice. NIfTI files are written in
canonical RAS+ voxel order (index ``i`` grows towards the patient's right,
``j`` towards anterior, ``k`` towards superior) and read back
through ``nibabel.as_closest_canonical``, so files in any orientation load the
same way.
"""

from __future__ import annotations

import numpy as np


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
    import nibabel as nib

    canonical = nib.as_closest_canonical(image)
    data = np.asanyarray(canonical.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"expected a 3-D volume, got shape {data.shape}")
    return np.ascontiguousarray(data.transpose(2, 1, 0)[:, ::-1, ::-1])
