"""Time all-pairs MS-SSIM: lungsynth's engine against sewar's per-pair loop (the seed's method).

Builds 200 grayscale 256x256 uint8 images (frames of the lus-pocus sample in
``../shared/realdata`` or ``$LUNGSYNTH_REALDATA`` when present, else deterministic
synthetic speckle), times ``lungsynth.metrics.similarity.pairwise("ms_ssim", images)`` over all
N(N-1)/2 pairs, times ``sewar.full_ref.msssim`` on a random sample of those pairs in the
same run, and checks agreement with pytorch-msssim and sewar.

    python benchmarks/msssim_allpairs.py                  # 200 images, 200 sewar pairs
    python benchmarks/msssim_allpairs.py --sewar-all      # sewar on all pairs (about 35 min)
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from lungsynth.metrics.similarity import pairwise

DEFAULT_REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _to_256(frames: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` uint8 -> ``(N, 256, 256)`` uint8 (bilinear)."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).float()[:, None]
    t = torch.nn.functional.interpolate(t, size=(256, 256), mode="bilinear", align_corners=False)
    return t[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def _real_frames(root: Path, n: int, rng: np.random.Generator) -> np.ndarray | None:
    """Up to ``n`` grayscale frames sampled evenly from the .mat files and the videos."""
    videos: list[np.ndarray] = []
    for f in sorted((root / "lus-pocus" / "mat").glob("*.mat")):
        from scipy.io import loadmat

        arr = next(v for k, v in loadmat(f).items() if not k.startswith("__"))
        frames = arr[:, :, 0, :] if arr.ndim == 4 else arr
        videos.append(np.moveaxis(frames, -1, 0))
    try:
        import imageio.v3 as iio

        for f in sorted((root / "lus-pocus" / "pocus_videos" / "convex").glob("*.gif")):
            arr = np.asarray(iio.imread(f))  # (N, H, W[, C])
            videos.append(arr[..., 0] if arr.ndim == 4 else arr)
    except Exception as exc:  # videos are optional; .mat frames suffice
        print(f"videos skipped: {exc}")
    if not videos:
        return None
    per = int(np.ceil(n / len(videos)))
    picked = []
    for v in videos:
        idx = np.sort(rng.choice(len(v), size=min(per, len(v)), replace=False))
        picked.append(_to_256(v[idx].astype(np.uint8)))
    out = np.concatenate(picked)
    return out[rng.permutation(len(out))[:n]] if len(out) >= n else None


def _synthetic(n: int, rng: np.random.Generator) -> np.ndarray:
    """Speckle-like images: smoothed field times Rayleigh noise, log-compressed, plus a fan mask."""
    from scipy import ndimage

    yy, xx = np.mgrid[0:256, 0:256]
    angle = np.arctan2(xx - 128, yy + 40)
    fan = (np.abs(angle) < 0.6) & (np.hypot(xx - 128, yy + 40) < 300)
    out = np.empty((n, 256, 256), np.uint8)
    for i in range(n):
        field = ndimage.gaussian_filter(rng.random((256, 256)), 12)
        speckle = rng.rayleigh(1.0, (256, 256))
        img = ndimage.gaussian_filter(field * speckle, 0.8)
        img = np.log1p(4 * img / img.mean())
        out[i] = np.clip(img / img.max() * 255 * fan, 0, 255).astype(np.uint8)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--sewar-pairs", type=int, default=200, help="random pairs timed with sewar")
    parser.add_argument("--sewar-all", action="store_true", help="run sewar on all pairs")
    parser.add_argument("--check-pairs", type=int, default=500, help="pairs checked against pytorch-msssim")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synthetic", action="store_true", help="ignore real data")
    args = parser.parse_args()

    import pytorch_msssim
    from sewar.full_ref import msssim as sewar_msssim

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    root = Path(os.environ.get("LUNGSYNTH_REALDATA", DEFAULT_REALDATA))
    imgs = None if args.synthetic or not root.is_dir() else _real_frames(root, args.n_images, rng)
    source = f"real lus-pocus frames from {root}" if imgs is not None else "synthetic speckle images"
    if imgs is None:
        imgs = _synthetic(args.n_images, rng)
    n = len(imgs)
    n_pairs = n * (n - 1) // 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {_cpu_name()} ({os.cpu_count()} cores)")
    print(f"images: {n} x 256x256 grayscale uint8, {source}; {n_pairs} pairs")

    x = torch.from_numpy(imgs)[:, None]
    t0 = time.perf_counter()
    mat = pairwise("ms_ssim", x, batch_size=args.batch_size)
    t_ours = time.perf_counter() - t0
    rate_ours = n_pairs / t_ours
    print(f"lungsynth pairwise ms_ssim: {t_ours:.1f} s for {n_pairs} pairs = {rate_ours:.0f} pairs/s")

    iu, ju = np.triu_indices(n, 1)
    k = n_pairs if args.sewar_all else min(args.sewar_pairs, n_pairs)
    sample = rng.choice(n_pairs, size=k, replace=False)
    t0 = time.perf_counter()
    sew = np.array([float(sewar_msssim(imgs[iu[p]], imgs[ju[p]])) for p in sample])
    t_sew = time.perf_counter() - t0
    rate_sew = k / t_sew
    print(f"sewar msssim per-pair loop: {t_sew:.1f} s for {k} pairs = {rate_sew:.1f} pairs/s")
    print(f"speed-up: {rate_ours / rate_sew:.0f}x; sewar projected for all {n_pairs} pairs: "
          f"{n_pairs / rate_sew / 60:.1f} min (lungsynth: {t_ours:.1f} s)")

    ours_s = mat[iu[sample], ju[sample]].numpy()
    neg = sew < 0
    clamped = ours_s == 0  # some contrast-structure term < 0: we clamp it (product 0), sewar keeps |.|^w cos(pi w)
    rest = ~clamped
    print(f"vs sewar on those {k} pairs: max |diff| {np.abs(ours_s - sew).max():.4f}; sewar < 0 on {int(neg.sum())}, "
          f"ours clamped to 0 on {int(clamped.sum())}; max |diff| on the other {int(rest.sum())}: "
          f"{np.abs(ours_s - sew)[rest].max() if rest.any() else float('nan'):.4f} "
          f"(median {np.median(np.abs(ours_s - sew)[rest]) if rest.any() else float('nan'):.4f})")

    c = rng.choice(n_pairs, size=min(args.check_pairs, n_pairs), replace=False)
    ref = pytorch_msssim.ms_ssim(x[iu[c]].float(), x[ju[c]].float(), data_range=255, size_average=False)
    diff = (mat[iu[c], ju[c]] - ref.double()).abs().max().item()
    print(f"vs pytorch_msssim on {len(c)} pairs: max |diff| {diff:.2e}")
    print(f"MS-SSIM among these images: mean {np.nanmean(mat.numpy()[iu, ju]):.4f}")


if __name__ == "__main__":
    main()
