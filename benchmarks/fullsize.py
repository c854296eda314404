"""The paper path's code at its real sizes, random weights, nothing downloaded: shape, memory and dtype
problems at real size show up here (on the CPU, in the tests) rather than on a user's GPU.

    python benchmarks/fullsize.py                    # the CPU check: one step of each part (a few minutes)
    python benchmarks/fullsize.py --device cuda --precision bf16 --finetune-steps 50 --sample-steps 50 \\
        --images 16 --eval-steps 20                  # benchmarks/gpu.sh: throughput against FLOP limits

What runs (generator/architectures.py holds the published configurations):
 1. DiT-XL/2-256 built, its 28 per-block embedders tied (generator/embedders.py tie_embedders): the unique
    parameter count must equal architectures.dit_parameters() (674,834,720: DiT's 675M without its
    fixed position table), and DiffFit's trainable count architectures.difffit_trainable() (1,739,552).
 2. Fine-tuning steps at batch 8 with both memories full (K = 64 latents of 4x32x32 per class, two
    classes): method/finetune.py step_loss (eq. 6), AdamW on the DiffFit set, torch's EMA, both memory
    updates with max eviction.
 3. DiffFit folded and the embedders untied (what a fine-tuning job saves), then guided sampling of
    ``--images`` images with the 1000-class null label and 3-channel guidance (generator/sample.py).
 4. sd-vae-ft-mse decoding the samples to 256 px (generator/latents.py decode).
 5. Training steps of ConvNet-6, ResNetAP-10 and ResNet-18 at 224 px with config/paper.yaml's widths,
    batch, augmentation and CutMix, through evaluate/trainer.py (one epoch of ``--eval-steps`` batches,
    then a test pass of 8 images).
Prints seconds per step, throughput, the peak resident memory after each part and, for each part, the
ratio of the measured throughput to its FLOP limit on ``--peak-tflops`` (benchmarks/cost.py's counts).
``--json PATH`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from diffusers import AutoencoderKL, DiTTransformer2DModel  # noqa: E402

from divdistill.data.augment import AugmentConfig  # noqa: E402
from divdistill.runtime.device import resolve  # noqa: E402
from divdistill.evaluate.nets import build_net  # noqa: E402
from divdistill.evaluate.trainer import TrainConfig, seed_everything, train_and_test  # noqa: E402
from divdistill.experiment import config as dd  # noqa: E402
from divdistill.generator.architectures import DIT_XL_2_256, SD_VAE, difffit_trainable, dit_parameters  # noqa: E402
from divdistill.generator.latents import decode  # noqa: E402
from divdistill.generator.sample import make_scheduler, sample_latents  # noqa: E402
from divdistill.generator.embedders import tie_embedders, untie_embedders  # noqa: E402
from divdistill.method.difffit import apply_difffit, count_trainable, fold_difffit  # noqa: E402
from divdistill.method.finetune import FinetuneConfig, step_loss  # noqa: E402
from divdistill.method.memory import Memory  # noqa: E402


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def unique_parameters(model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                    help="the DiT forward's (default: the suite's, bf16 on CUDA, fp32 on the CPU)")
    ap.add_argument("--finetune-steps", type=int, default=1)
    ap.add_argument("--sample-steps", type=int, default=2)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--eval-steps", type=int, default=1)
    ap.add_argument("--eval-batch", type=int, default=None, help="default: config/paper.yaml's evaluate.batch_size")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the device's dense peak for the ratios (default: cost.py's H100 bf16 on CUDA, none on the CPU)")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve(args.device)
    paper = dd.load(ROOT / "config" / "paper.yaml")
    res: dict = {"device": str(device), "precision": args.precision or ("bf16" if device.type == "cuda" else "fp32")}
    torch.manual_seed(0)

    # 1. DiT-XL/2: tying and DiffFit at real size ----------------------------------------------
    t0 = time.perf_counter()
    dit = DiTTransformer2DModel(**DIT_XL_2_256).to(device)
    res["dit_build_s"] = time.perf_counter() - t0
    res["dit_parameters_untied"] = unique_parameters(dit)
    for b in dit.transformer_blocks[1:]:  # identical per-block embedders, as a converted DiT checkpoint holds
        b.norm1.emb.load_state_dict(dit.transformer_blocks[0].norm1.emb.state_dict())
    tie_embedders(dit)
    res["dit_parameters"] = unique_parameters(dit)
    apply_difffit(dit)
    res["trainable"] = count_trainable(dit)["total"]
    assert res["dit_parameters"] == dit_parameters(), (res["dit_parameters"], dit_parameters())
    assert res["trainable"] == difffit_trainable(), (res["trainable"], difffit_trainable())
    res["peak_gb_build"] = peak_gb()

    # 2. fine-tuning steps with both memories full ----------------------------------------------
    cfg = FinetuneConfig(**{k: v for k, v in paper["finetune"].items() if k in FinetuneConfig.__dataclass_fields__})
    bs, k, c, s = cfg.batch_size, cfg.memory_size, DIT_XL_2_256["in_channels"], DIT_XL_2_256["sample_size"]
    classes = torch.tensor([207, 360], device=device)  # two ImageNet-1K labels, a subset's generator labels
    g = torch.Generator().manual_seed(0)
    real, gen = Memory(k, cfg.real_evict), Memory(k, cfg.gen_evict)
    fill = torch.randn(2 * k, c, s, s, generator=g).to(device)
    for mem in (real, gen):
        mem.update(fill, classes.repeat_interleave(k))
    assert all(len(mem.get(int(y))) == k for mem in (real, gen) for y in classes)
    params = [p for p in dit.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    ema = [p.detach().clone() for p in params]
    ema_update = torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay)
    scheduler = make_scheduler()
    dit.train()
    times = []
    for _ in range(args.finetune_steps):
        z0 = torch.randn(bs, c, s, s, generator=g).to(device)
        t = torch.randint(0, 1000, (bs,), generator=g).to(device)
        noise = torch.randn(bs, c, s, s, generator=g).to(device)
        y = classes[torch.randint(0, 2, (bs,), generator=g).to(device)]
        sync(device)
        t0 = time.perf_counter()
        if args.precision == "bf16":  # step_loss autocasts as the suite does; bf16 on the CPU is an option here
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss, _, logs, z0_hat = step_loss(dit, scheduler, z0, t, noise, y, y, real, gen, cfg)
        else:
            loss, _, logs, z0_hat = step_loss(dit, scheduler, z0, t, noise, y, y, real, gen, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, [p.detach() for p in params], None)
        real.update(z0, y)
        gen.update(z0_hat.detach(), y)
        sync(device)
        times.append(time.perf_counter() - t0)
        assert torch.isfinite(loss) and logs["loss_real"] > 0 and logs["loss_gen"] > 0
    assert all(len(mem.get(int(y))) == k for mem in (real, gen) for y in classes)  # full, evicting
    res["finetune_s_per_step"] = min(times)
    res["finetune_steps_per_s"] = 1 / min(times)
    res["peak_gb_finetune"] = peak_gb()

    # 3. fold, untie and sample ---------------------------------------------------------------
    with torch.no_grad():
        for p, e in zip(params, ema):
            p.copy_(e)
    fold_difffit(dit)
    untie_embedders(dit)
    dit.eval().requires_grad_(False)
    sp = paper["sample"]
    labels = classes.cpu().repeat(args.images)[: args.images]
    sync(device)
    t0 = time.perf_counter()
    z = sample_latents(dit, labels, steps=args.sample_steps, guidance=sp["guidance"],
                       guidance_channels=sp["guidance_channels"], null_label=DIT_XL_2_256["num_embeds_ada_norm"],
                       seed=0, index=torch.arange(args.images), device=device, precision=args.precision,
                       progress=False)
    sync(device)
    res["sample_s"] = time.perf_counter() - t0
    res["sample_images_per_s_at_50_steps"] = args.images / (res["sample_s"] * 50 / args.sample_steps)
    assert z.shape == (args.images, c, s, s)
    del dit, opt, ema, params
    res["peak_gb_sample"] = peak_gb()

    # 4. sd-vae-ft-mse decode to 256 px ---------------------------------------------------------
    vae = AutoencoderKL(**SD_VAE).to(device).eval()
    t0 = time.perf_counter()
    images = decode(vae, z.to(device))
    sync(device)
    res["decode_s"] = time.perf_counter() - t0
    assert images.shape == (args.images, 3, 256, 256) and images.dtype == torch.uint8
    del vae
    res["peak_gb_decode"] = peak_gb()

    # 5. the test networks at 224 px --------------------------------------------------------------
    ev = paper["evaluate"]
    bs_eval = args.eval_batch or ev["batch_size"]
    n = bs_eval * args.eval_steps
    x = torch.randint(0, 256, (n, 3, 256, 256), generator=g, dtype=torch.uint8)
    yv = torch.arange(n) % 10
    tcfg = TrainConfig(epochs=1, resolution=ev["resolution"], batch_size=bs_eval, lr=ev["lr"],
                       momentum=ev["momentum"], weight_decay=ev["weight_decay"], eval_every=0,
                       augment=AugmentConfig(**{**ev["augment"], "crop_scale": tuple(ev["augment"]["crop_scale"])}))
    for name, spec in ev["nets"].items():
        seed_everything(0)
        net = build_net(name, 10, 3, ev["resolution"], spec["width"], spec.get("depth"))
        sync(device)
        t0 = time.perf_counter()
        out = train_and_test(net, x, yv, x[:8], yv[:8], tcfg, seed=0, device=device, progress=False)
        sync(device)
        res[f"{name}_s_per_step"] = (time.perf_counter() - t0) / args.eval_steps
        res[f"{name}_images_per_s"] = n / (time.perf_counter() - t0)
        assert out["curve"][-1]["train_loss"] == out["curve"][-1]["train_loss"]  # finite, not nan
    res["eval_batch"] = bs_eval
    res["peak_gb"] = peak_gb()
    _ratios(res, args, device, paper)
    _report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


def _ratios(res: dict, args, device, paper) -> None:
    """Measured throughput / the FLOP limit on the peak (cost.py's per-image FLOP counts)."""
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    if peak is None and device.type == "cuda":
        from cost import PEAK

        peak = PEAK["bf16"]
    if peak is None:
        return
    from cost import count_models

    f = count_models(paper, 10, 256)
    bs = paper["finetune"]["batch_size"]
    limits = {"finetune_steps_per_s": peak / (bs * f["dit_train_difffit"]),
              "sample_images_per_s_at_50_steps": peak / (2 * 50 * f["dit_fwd"] + f["vae_dec"]),
              **{f"{m}_images_per_s": peak / f[f"{m}_train"] for m in paper["evaluate"]["nets"]}}
    res["peak_tflops"] = peak / 1e12
    res["of_limit"] = {k: res[k] / v for k, v in limits.items()}


def _report(res: dict) -> None:
    print(f"device {res['device']}, DiT precision {res['precision']}")
    print(f"DiT-XL/2: {res['dit_parameters']:,} parameters tied ({res['dit_parameters_untied']:,} with diffusers' "
          f"per-block embedders), {res['trainable']:,} trainable under DiffFit; built in {res['dit_build_s']:.1f} s")
    rows = [("fine-tuning step (batch 8, memories full)", f"{res['finetune_s_per_step']:.2f} s/step",
             "finetune_steps_per_s", res["peak_gb_finetune"]),
            ("guided sampling (50-step equivalent)", f"{res['sample_images_per_s_at_50_steps']:.3f} images/s",
             "sample_images_per_s_at_50_steps", res["peak_gb_sample"]),
            ("sd-vae-ft-mse decode to 256 px", f"{res['decode_s']:.2f} s", None, res["peak_gb_decode"])]
    rows += [(f"{m} train step at 224 px, batch {res['eval_batch']}", f"{res[f'{m}_s_per_step']:.2f} s/step ({res[f'{m}_images_per_s']:.1f} img/s)",
              f"{m}_images_per_s", res["peak_gb"]) for m in ("convnet", "resnetap10", "resnet18")]
    print("| part | speed | of the FLOP limit | peak RSS so far (GB) |")
    print("|---|---:|---:|---:|")
    for name, speed, key, gb in rows:
        ratio = res.get("of_limit", {}).get(key) if key else None
        print(f"| {name} | {speed} | {'-' if ratio is None else f'{ratio:.3f}'} | {gb:.1f} |")


if __name__ == "__main__":
    main()
