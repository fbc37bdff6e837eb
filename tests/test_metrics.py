"""Metric conventions against hand-computed values and scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from lungsynth.metrics.classification import accuracy, binary_report, f1_score, roc_auc, sensitivity, specificity
from lungsynth.metrics.intervals import t_interval, wilson_interval


def test_hand_computed_case():
    y = [1, 1, 1, 0, 0, 0, 0]
    p = [1, 1, 0, 1, 0, 0, 0]  # tp=2 fn=1 fp=1 tn=3
    assert accuracy(y, p) == pytest.approx(5 / 7)
    assert f1_score(y, p) == pytest.approx(4 / 6)
    assert sensitivity(y, p) == pytest.approx(2 / 3)
    assert specificity(y, p) == pytest.approx(3 / 4)


def test_auc_with_ties_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 1)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert roc_auc(y, s) == pytest.approx(pairwise)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_positive_class_is_explicit():
    """Swapping which class is positive swaps F1's meaning (the COVID-CT index trap)."""
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([1, 0, 0, 0, 0])
    assert f1_score(y, p) == pytest.approx(2 / 3)
    assert f1_score(1 - y, 1 - p) == pytest.approx(6 / 7)


def test_t_interval_matches_scipy():
    values = np.array([0.41, 0.38, 0.45, 0.36, 0.40, 0.44, 0.39, 0.37, 0.43, 0.42])
    mean, low, high = t_interval(values, 0.95)
    ref = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert (low, high) == pytest.approx(ref)
    assert mean == pytest.approx(values.mean())
    half = 2.262 * values.std(ddof=1) / math.sqrt(10)
    assert high - mean == pytest.approx(half, rel=1e-3)


def test_wilson_interval_known_value():
    p, low, high = wilson_interval(40, 100)
    assert p == 0.4
    assert (low, high) == pytest.approx((0.3094, 0.4980), abs=1e-3)


def test_binary_report_threshold():
    report = binary_report([1, 0, 1, 0], [0.9, 0.2, 0.4, 0.6])
    assert report["accuracy"] == 0.5 and report["auc"] == 0.75 and report["n_positive"] == 2
