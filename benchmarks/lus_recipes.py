"""LUS recipe sweep: train each score at config/config.yaml's settings plus overrides, print the evidence figures.

Usage: python benchmarks/lus_recipes.py NAME '{train overrides}' '{model overrides}' SCORES PREPROCESSED_DIR
PREPROCESSED_DIR holds train.pt/test.pt of a LUS dataset (e.g. a workdir's results/phantom_lus/preprocessed).
Prints per score the mean generated-vs-real MS-SSIM (gvr) and generated diversity against the issue-14 bars
(0.75 x real-vs-real; real + 0.10). Work folders go to /tmp/lus_recipes/.
"""
import json, sys, time, torch
from lungsynth.config import load_config, train_settings
from lungsynth.data.preprocess import class_images, load_split
from lungsynth.methods.lusgan.train import LUSSettings, train_lus_gan, build_lus_generator
from lungsynth.methods.unconditional import sample_generator, image_grid
from lungsynth.methods.lusgan.jobs import _even_sample, _per_image
from lungsynth.metrics import similarity as sim
torch.set_num_threads(1)
name, sover, mover, scores = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
root = sys.argv[5]
import os
os.makedirs('/tmp/lus_recipes', exist_ok=True)
cfg = load_config(os.path.join(os.path.dirname(__file__), '..', 'config', 'config.yaml'))
train, test = load_split(f'{root}/train.pt'), load_split(f'{root}/test.pt')
model = dict(cfg["lusgan"]["model"]) | mover
size = int(train["images"].shape[-1])
from lungsynth.methods.lusgan.jobs import ms_ssim_levels
ms = {"weights": sim.ms_ssim_weights(ms_ssim_levels(size))}
res = []
for s in scores:
    imgs = class_images(train, s)
    real = _even_sample(class_images(test, s), 48).float()/255
    rr = _per_image(sim.pairwise("ms_ssim", real, **ms)).mean().item()
    st = LUSSettings.from_dict(train_settings(cfg, s, "lusgan") | sover)
    t=time.time()
    out = train_lus_gan(imgs, model, st, f'/tmp/lus_recipes/work_{name}_{s}', progress=False)
    g = build_lus_generator(model, imgs.shape[1], size); g.load_state_dict(out["generator"]); g.eval()
    fake = sample_generator(g, 64, seed=1234).float()/255
    image_grid((fake[:12]*255).to(torch.uint8),12).save(f'/tmp/lus_recipes/grid_{name}_{s}.png')
    gvr = _per_image(sim.compare_sets(fake, real, metrics=("ms_ssim",), options={"ms_ssim": ms})["ms_ssim"]).mean().item()
    div = _per_image(sim.pairwise("ms_ssim", fake, **ms)).mean().item()
    ok = "OK" if (gvr >= .75*rr and div <= rr+.1) else "--"
    print(f"{name} score {s} it {st.iterations}: gvr {gvr:.2f} (bar {.75*rr:.2f}) div {div:.2f} (bar {rr+.1:.2f}) {ok} {time.time()-t:.0f}s", flush=True)
