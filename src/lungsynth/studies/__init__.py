"""Downstream studies: the U-Net study (seed 001's Tables III/IV) and the classifier study.

:mod:`.design` holds the study design (ratios, compositions, folds, summaries); :mod:`.jobs` the workflow jobs."""
