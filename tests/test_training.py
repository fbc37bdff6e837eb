"""DCGAN training: loss logging, checkpoints and exact resume after an interruption."""

import pandas as pd
import torch

from lungsynth.methods.unconditional import sample_generator
from lungsynth.engine import CheckpointStore
from lungsynth.methods.dcgan.train import DCGANSettings, load_generator, train_dcgan

MODEL = {"latent_dim": 8, "generator_widths": [16, 8], "discriminator_widths": [8, 16]}


def _images(n=12, size=16):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, size, size), generator=gen, dtype=torch.uint8)


def _settings(**overrides):
    return DCGANSettings(**({"epochs": 3, "batch_size": 4, "checkpoint_every": 2, "device": "cpu"} | overrides))


def test_training_logs_every_step_and_checkpoints(tmp_path):
    result = train_dcgan(_images(), MODEL, _settings(), tmp_path, progress=False)
    losses = pd.read_csv(result["loss_csv"])
    assert list(losses["step"]) == list(range(9))
    assert losses[["loss_d", "loss_g"]].notna().all().all()
    assert CheckpointStore(tmp_path / "checkpoints").steps() == [8, 9]


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    images = _images()
    full = train_dcgan(images, MODEL, _settings(), tmp_path / "full", progress=False)

    work = tmp_path / "killed"
    stopped = train_dcgan(images, MODEL, _settings(), work, progress=False, stop_after=5)
    assert stopped["stopped_at"] == 5
    # the "kill" happened after step 5; the last checkpoint is at step 4, step 5 is lost
    assert CheckpointStore(work / "checkpoints").steps()[-1] == 4
    resumed = train_dcgan(images, MODEL, _settings(), work, progress=False)
    assert resumed["resumed_from"] == 4
    for name, tensor in full["generator"].items():
        assert torch.equal(tensor, resumed["generator"][name]), name
    log_full = pd.read_csv(full["loss_csv"])
    log_resumed = pd.read_csv(resumed["loss_csv"])
    pd.testing.assert_frame_equal(log_full, log_resumed)


def test_generated_images_are_seed_controlled(tmp_path):
    from lungsynth.artifacts import torch_save

    result = train_dcgan(_images(), MODEL, _settings(epochs=1), tmp_path, progress=False)
    torch_save(tmp_path / "g.pt", {k: result[k] for k in ("generator", "model_config", "channels", "image_size", "step")})
    generator = load_generator(tmp_path / "g.pt")
    a = sample_generator(generator, 10, seed=3, batch_size=4)
    b = sample_generator(generator, 10, seed=3, batch_size=7)
    c = sample_generator(generator, 10, seed=4)
    assert a.dtype == torch.uint8 and a.shape == (10, 1, 16, 16)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_changed_settings_or_data_do_not_resume_stale_checkpoints(tmp_path):
    images = _images()
    work = tmp_path / "run"
    train_dcgan(images, MODEL, _settings(), work, progress=False, stop_after=5)
    # another learning rate: the old checkpoints are discarded, training starts at 0
    fresh = train_dcgan(images, MODEL, _settings(lr=1e-3), tmp_path / "fresh_lr", progress=False)
    other_lr = train_dcgan(images, MODEL, _settings(lr=1e-3), work, progress=False)
    assert other_lr["resumed_from"] is None
    for name, tensor in fresh["generator"].items():
        assert torch.equal(tensor, other_lr["generator"][name]), name
    assert list(pd.read_csv(other_lr["loss_csv"])["step"]) == list(range(9))
    # other data: the same
    work2 = tmp_path / "run2"
    train_dcgan(images, MODEL, _settings(), work2, progress=False, stop_after=5)
    changed = images.clone()
    changed[0, 0, 0, 0] ^= 1
    assert train_dcgan(changed, MODEL, _settings(), work2, progress=False)["resumed_from"] is None
    # a checkpoint-frequency change alone still resumes
    work3 = tmp_path / "run3"
    train_dcgan(images, MODEL, _settings(), work3, progress=False, stop_after=5)
    assert train_dcgan(images, MODEL, _settings(checkpoint_every=3), work3, progress=False)["resumed_from"] == 4


def test_checkpoints_without_the_fingerprint_are_discarded(tmp_path):
    CheckpointStore(tmp_path).save(3, {"step": 3})  # an old-format checkpoint
    store = CheckpointStore(tmp_path, fingerprint="abc")
    assert store.latest() is None and store.steps() == []
    store.save(4, {"step": 4})
    assert store.latest()["step"] == 4 and CheckpointStore(tmp_path, fingerprint="xyz").latest() is None
