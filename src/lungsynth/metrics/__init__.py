"""Metrics: one function per measure with a documented convention, plus batched forms.

Classification (:mod:`.classification`), confidence intervals (:mod:`.intervals`), segmentation overlap
(:mod:`.segmentation`), full-reference similarity and the all-pairs engine (:mod:`.similarity`),
distribution distances on features (:mod:`.distribution`) and masked pixel metrics (:mod:`.masked`).
Metrics take images or features; the networks that make features live in :mod:`lungsynth.networks`."""
