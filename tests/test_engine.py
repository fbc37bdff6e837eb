"""The shared resumable training loop, and the trainers that gained resume with it (classifier, feature extractor)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from lungsynth.tasks import feature_extractor as fx
from lungsynth.tasks.classifier import train_classifier
from lungsynth.engine import CheckpointStore, Step, TrainingLoop, Value, run_fingerprint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy_run(work_dir, *, total=7, stop_after=None, checkpoint_every=2, seed=5, fail_at=None):
    """Fit y = 3x with SGD on noisy batches drawn from the loop's streams; returns (loop result, weights, seen)."""
    loop = TrainingLoop(work_dir, total=total, seed=seed, device="cpu", checkpoint_every=checkpoint_every,
                        loss_columns=("step", "loss"), desc="toy", progress=False, stop_after=stop_after)
    loop.seed_torch()
    model = torch.nn.Linear(1, 1)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    seen = Value([])
    loop.resume({"model": model, "optimiser": optimiser, "seen": seen}, run_fingerprint({"seed": seed}, model))

    def step_fn(step: int) -> Step:
        x = torch.randn(8, 1, generator=loop.stream(1, step))
        loss = ((model(x) - 3 * x) ** 2).mean()
        if fail_at == step:
            loss = loss * float("nan")
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        seen.value.append(step)
        return Step(row=(step, round(loss.item(), 6)), losses={"loss": loss.item()})

    result = loop.run(step_fn)
    return result, {k: v.clone() for k, v in model.state_dict().items()}, list(seen.value)


def test_a_run_stopped_and_resumed_equals_the_uninterrupted_run(tmp_path):
    whole, weights, seen = _toy_run(tmp_path / "whole")
    first, _, _ = _toy_run(tmp_path / "split", stop_after=3)
    assert first.stopped and first.step == 3
    resumed, weights_resumed, seen_resumed = _toy_run(tmp_path / "split")
    assert resumed.resumed_from == 2  # the last checkpoint before the stop (every 2 steps)
    assert not resumed.stopped and resumed.step == 7
    for key in weights:
        assert torch.equal(weights[key], weights_resumed[key]), key
    assert seen_resumed == seen == list(range(7))  # checkpointed plain state resumes too
    assert (tmp_path / "whole" / "losses.csv").read_text() == (tmp_path / "split" / "losses.csv").read_text()
    assert len(pd.read_csv(tmp_path / "split" / "losses.csv")) == 7


def test_the_last_step_always_checkpoints_and_a_finished_run_resumes_at_its_end(tmp_path):
    _toy_run(tmp_path, total=5, checkpoint_every=3)
    assert CheckpointStore(tmp_path / "checkpoints").steps() == [3, 5]
    again, _, seen = _toy_run(tmp_path, total=5, checkpoint_every=3)
    assert again.resumed_from == 5 and seen == list(range(5))


def test_a_changed_fingerprint_starts_afresh(tmp_path):
    _toy_run(tmp_path, stop_after=4)
    other, _, seen = _toy_run(tmp_path, seed=6)
    assert other.resumed_from is None and seen == list(range(7))


def test_a_non_finite_loss_stops_the_run_naming_the_step(tmp_path):
    with pytest.raises(FloatingPointError, match=r"toy: non-finite loss at step 4: loss=nan"):
        _toy_run(tmp_path, fail_at=4)


def test_without_a_work_dir_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result, _, seen = _toy_run(None)
    assert result.loss_csv is None and seen == list(range(7)) and not list(tmp_path.iterdir())


def _classifier_split(n_per_class: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 60, (2 * n_per_class, 1, 32, 32), generator=gen, dtype=torch.uint8)
    images[:n_per_class, :, 8:24, 8:24] += 150
    return {"images": images, "labels": torch.tensor([0] * n_per_class + [1] * n_per_class),
            "classes": ["covid", "noncovid"]}


def test_classifier_resumes_bit_exactly_from_an_epoch_checkpoint(tmp_path):
    train, val = _classifier_split(8, 0), _classifier_split(4, 1)
    kwargs = dict(positive_class="covid", epochs=3, batch_size=8, device="cpu", progress=False)
    whole, history = train_classifier(train, val, work_dir=tmp_path / "whole", **kwargs)
    stopped, partial = train_classifier(train, val, work_dir=tmp_path / "split", stop_after=2, **kwargs)
    assert stopped is None and len(partial) == 2
    resumed, history_resumed = train_classifier(train, val, work_dir=tmp_path / "split", **kwargs)
    assert history_resumed == history
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    in_memory, history_memory = train_classifier(train, val, **kwargs)
    assert history_memory == history
    assert all(torch.equal(v, in_memory.state_dict()[k]) for k, v in whole.state_dict().items())


def test_feature_extractor_resumes_bit_exactly_from_an_epoch_checkpoint(tmp_path):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 1, 32, 32), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 4, (32, 32, 32), generator=gen, dtype=torch.uint8)
    kwargs = dict(width=4, epochs=3, batch_size=8, seed=2, progress=False)
    whole, history = fx.train_feature_extractor(images, labels, work_dir=tmp_path / "whole", **kwargs)
    stopped, partial = fx.train_feature_extractor(images, labels, work_dir=tmp_path / "split", stop_after=1, **kwargs)
    assert stopped is None and len(partial) == 1
    resumed, history_resumed = fx.train_feature_extractor(images, labels, work_dir=tmp_path / "split", **kwargs)
    pd.testing.assert_frame_equal(history, history_resumed)
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
