"""Generator families, one subpackage each: train, generate and score, plus the workflow jobs.

:mod:`.dcgan` (seed 000), :mod:`.lusgan` (seed 003), :mod:`.cgan` (seed 001 and its comparators);
:mod:`.unconditional` holds what the per-class unconditional families share (one class's training job,
sampling a generator into image files)."""
