"""Report helpers: the plain-language reading of positive shares."""

import pandas as pd

from lungsynth.report.build import interpret_shares, share_summary_table


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


def _files(tmp_path):
    rows = [
        ("patient01_a.mat", "lus_mat", 40, 40, ".mat variable 'video' uint8 H x W x 3 x N: RGB frames", "video", "HWCN", ""),
        ("patient02_a.mat", "lus_mat", 30, 30, ".mat variable 'frames' uint8 H x W x N: gray frames", "frames", "HWN", ""),
        ("patient03_a.mat", "lus_mat", 20, 20, ".mat variable 'video' uint8 H x W x 3 x N: RGB frames", "video", "HWCN", ""),
        ("patient04_a.mat", "lus_mat", 1, 1, ".mat variable 'img' uint8 H x W x 3: one RGB frame (auto rule; mat_layout: "
         "HWN reads it as 3 gray frames)", "img", "HWC", "auto rule"),
    ]
    from lungsynth.data.ingest import FILES_COLUMNS

    path = tmp_path / "files.csv"
    pd.DataFrame(rows, columns=list(FILES_COLUMNS)).to_csv(path, index=False)
    return path


def test_reading_table_counts_each_reading_with_an_example(tmp_path):
    from lungsynth.data.ingest import read_files
    from lungsynth.report.build import reading_table

    table, notes = reading_table(read_files(_files(tmp_path)))
    assert table.to_dict("records")[0] == {"reading": ".mat variable 'video' uint8 H x W x 3 x N: RGB frames",
                                           "format": "lus_mat", "files": 2, "slices": 60,
                                           "example file": "patient01_a.mat"}
    assert table["files"].tolist() == [2, 1, 1]
    assert len(notes) == 1 and notes[0].startswith("1 .mat file(s) hold an H x W x 3 array, read as one RGB frame "
                                                   "by the auto rule (e.g. patient04_a.mat)")
    assert "mat_layout: HWN" in notes[0]


def test_report_section_shows_how_files_were_read(tmp_path):
    from lungsynth.report.build import _reading_section

    html = "".join(_reading_section(_files(tmp_path)))
    assert "How the 4 source file(s) were read" in html
    assert "<td>.mat variable &#x27;frames&#x27; uint8 H x W x N: gray frames</td>" in html
    assert "<p class='warn'>1 .mat file(s) hold an H x W x 3 array" in html
    assert _reading_section(None) == []
