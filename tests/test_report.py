"""Report helpers: the plain-language reading of positive shares."""

import pandas as pd

from lungsynth.report import interpret_shares, share_summary_table


def _summary(synth_cov, real_cov, synth_non, real_non):
    rows = []
    for source, label, share in (("synthetic", "covid", synth_cov), ("real", "covid", real_cov),
                                 ("synthetic", "noncovid", synth_non), ("real", "noncovid", real_non)):
        rows.append({"source": source, "class": label, "n_images": 100, "n_sets": 10, "mean_share_positive": share,
                     "ci_low": share - 0.1, "ci_high": share + 0.1, "pooled_share_positive": share,
                     "pooled_ci_low": share - 0.1, "pooled_ci_high": share + 0.1})
    return pd.DataFrame(rows)


def test_warns_when_generated_images_of_both_classes_look_positive():
    notes = interpret_shares(_summary(1.0, 0.75, 0.95, 0.2), "covid")
    assert any(n.startswith("Warning") for n in notes)
    assert "100.0% of generated covid" in notes[0] and "75.0% of real covid" in notes[0]


def test_no_warning_when_generated_negatives_look_negative():
    notes = interpret_shares(_summary(0.4, 0.8, 0.1, 0.2), "covid")
    assert not any(n.startswith("Warning") for n in notes)


def test_share_table_formats_percentages():
    table = share_summary_table(_summary(0.4, 0.8, 0.1, 0.2))
    assert table.iloc[0]["mean share of sets [CI]"] == "40.0% [30.0%, 50.0%]"
