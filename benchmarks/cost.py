"""GPU cost of a config's grid (default: config/paper.yaml), computed, not measured.

No GPU was available, so this script does not time anything: it counts the FLOPs of every
job type with ``torch.utils.flop_counter.FlopCounterMode`` on models built on the ``meta``
device (shapes only: no weights, no memory, seconds on a CPU) and divides by an assumed
throughput (peak x model-FLOP utilisation, MFU) that is printed and set on the command line.

Convention: FLOPs, 2 per multiply-add (FlopCounterMode's). The DiT paper's "118.6 Gflops" for
DiT-XL/2 counts multiply-adds, i.e. ~237 GFLOP here; both are printed as a sanity check.
FlopCounterMode counts matmuls, convolutions and attention only: normalisation, activations,
pooling, augmentation and optimiser updates are not counted (they are memory-bound; the
assumed MFU has to absorb them).

    python benchmarks/cost.py                       # paper grid, 8 GPUs
    python benchmarks/cost.py --gpus 16 --mfu-resnet 0.3
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from divdistill.data.registry import DATASETS  # noqa: E402
from divdistill.evaluate import protocols  # noqa: E402
from divdistill.evaluate.nets import build_net  # noqa: E402
from divdistill.experiment import config as dd  # noqa: E402
from divdistill.experiment import grid, jobsets, methods, names  # noqa: E402
from divdistill.generator.architectures import DIT_XL_2_256 as DIT_XL2  # noqa: E402
from divdistill.generator.architectures import SD_VAE  # noqa: E402

DIT_PAPER_GMACS = 118.6  # DiT paper, Table 4, DiT-XL/2 (256 px)

PEAK = {"bf16": 989e12, "tf32": 495e12}  # H100 SXM 80 GB, dense (no sparsity)


def flops(fn) -> int:
    fc = FlopCounterMode(display=False)
    with fc:
        fn()
    return fc.get_total_flops()


def meta(*shape, grad=False, dtype=torch.float32):
    return torch.empty(*shape, device="meta", dtype=dtype, requires_grad=grad)


# ---------------------------------------------------------------- per-image FLOPs of every model
def count_models(cfg: dict, n_classes: int, stored_res: int) -> dict[str, float]:
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    from divdistill.baselines.features import penultimate
    from divdistill.method.difffit import apply_difffit

    f, b = {}, 2  # batch 2, divided out (counts are linear in the batch)
    with torch.device("meta"):
        dit = DiTTransformer2DModel(**DIT_XL2)
        vae = AutoencoderKL(**SD_VAE)
    lat = DIT_XL2["sample_size"]
    z, t, y = meta(b, 4, lat, lat), torch.zeros(b, dtype=torch.long, device="meta"), \
        torch.zeros(b, dtype=torch.long, device="meta")
    with torch.no_grad():
        f["dit_fwd"] = flops(lambda: dit(z, timestep=t, class_labels=y)) / b
    # one fine-tuning step as finetune.py runs it: DiffFit (biases, class table and gamma scales
    # trainable; the big weights frozen, so no weight-gradient matmuls for them). finetune.py also ties
    # the 28 per-block embedders and runs them once (tie_embedders checks weights with torch.equal,
    # which meta tensors lack): untied here, they add ~0.1 GFLOP per image, < 0.1 %.
    apply_difffit(dit)
    dit.train()

    def step():
        dit(z, timestep=t, class_labels=y).sample.float().pow(2).mean().backward()
    f["dit_train_difffit"] = flops(step) / b
    vae_res = lat * 2 ** (len(SD_VAE["block_out_channels"]) - 1)  # 256
    with torch.no_grad():
        f["vae_enc"] = flops(lambda: vae.encode(meta(b, 3, vae_res, vae_res))) / b
        f["vae_dec"] = flops(lambda: vae.decode(meta(b, 4, lat, lat))) / b

    ev = cfg["evaluate"]
    for name, spec in ev["nets"].items():  # the test networks at the evaluation resolution
        net = build_net(name, n_classes, 3, ev["resolution"], spec["width"], spec.get("depth")).to("meta")
        with torch.no_grad():
            f[f"{name}_fwd"] = flops(lambda: net(meta(b, 3, ev["resolution"], ev["resolution"]))) / b
        f[f"{name}_train"] = flops(lambda: net(meta(b, 3, ev["resolution"], ev["resolution"])).sum().backward()) / b
    bl = cfg["baselines"]
    # features: the embedding net trains (and embeds) at the stored resolution (features.py: resolution
    # defaults to the stored side); DM also works at the stored side (dm.py builds the net at h)
    fe = bl["features"]
    net = build_net(fe["model"], n_classes, 3, stored_res, fe["width"], fe.get("depth")).to("meta")
    with torch.no_grad():
        f["feat_fwd"] = flops(lambda: net(meta(b, 3, stored_res, stored_res))) / b
    f["feat_train"] = flops(lambda: net(meta(b, 3, stored_res, stored_res)).sum().backward()) / b
    dm = cfg["synthesis"]["dm"]
    net = build_net(dm["model"], n_classes, 3, stored_res, dm["width"], dm.get("depth")).to("meta")
    net.requires_grad_(False)
    with torch.no_grad():
        f["dm_real"] = flops(lambda: penultimate(net, meta(b, 3, stored_res, stored_res))) / b
    # synthetic images: forward + backward to the pixels only (the random net is frozen)
    f["dm_syn"] = flops(lambda: penultimate(net, meta(b, 3, stored_res, stored_res, grad=True)).sum().backward()) / b
    return f


# ---------------------------------------------------------------- jobs of the grid
def n_tests(epochs: int, every: int) -> int:
    """Test passes of trainer.train_and_test: every ``every`` epochs and after the last."""
    return 1 if every <= 0 else epochs // every + (1 if epochs % every else 0)


def grid_jobs(cfg: dict, f: dict, n_train_pc: int, n_test_pc: int, mfu: dict) -> list[dict]:
    """Rows {type, jobs, flop (per job), seconds (per job at the assumed throughput)}."""
    def secs(parts):  # parts: [(flop, precision, mfu key)]
        return sum(fl / (PEAK[prec] * mfu[key]) for fl, prec, key in parts)

    datasets = grid.datasets_used(cfg)
    ncls = {d: len(DATASETS[d].labels) for d in datasets}
    n_train = {d: n_train_pc * ncls[d] for d in datasets}
    seeds, max_ipc = cfg["seeds"], max(cfg["ipc"])
    rows = []

    def add(kind, jobs_by_dataset, parts_fn, note=""):
        # one row per distinct cost; datasets of equal size share it
        by_cost = Counter()
        for d, n in jobs_by_dataset.items():
            if n:
                by_cost[tuple(parts_fn(d))] += n
        for parts, n in by_cost.items():
            rows.append({"type": kind, "jobs": n, "flop": sum(p[0] for p in parts), "s": secs(parts), "note": note})

    # the jobs that make the evaluated sets, as the DAG plans them (experiment/jobsets.py)
    up = jobsets.upstream_jobs(cfg)

    def per_dataset(rule, keep=lambda job: True):
        return Counter(job[0] for job in up[rule] if keep(job))

    ft = cfg["finetune"]
    add("encode", per_dataset("encode"), lambda d: [(2 * n_train[d] * f["vae_enc"], "tf32", "vae")])
    # finetune.py: epochs x (N // batch) steps of `batch` images, one DiffFit forward+backward each
    add("finetune", per_dataset("finetune"),
        lambda d: [(ft["epochs"] * (n_train[d] // ft["batch_size"]) * ft["batch_size"] * f["dit_train_difffit"],
                    "bf16", "dit_train")])
    sa = cfg["sample"]
    cfg_mult = 1 if sa["guidance"] == 1.0 else 2  # guided_output runs (cond | null) as one doubled batch

    def sampling(ipc):  # every evaluation seed's set of ipc images a class: the full chain (D⁴M runs less)
        return lambda d: [(len(seeds) * sa["steps"] * cfg_mult * ipc * ncls[d] * f["dit_fwd"], "bf16", "dit_sample"),
                          (len(seeds) * ipc * ncls[d] * f["vae_dec"], "tf32", "vae")]
    # one sampling job per (dataset, method, distill seed) draws every seed's set at the largest IPC; a
    # k-means sampler (MGD³, D⁴M) one job per IPC
    add("sample", per_dataset("sample"), sampling(max_ipc))
    for ipc in cfg["ipc"]:
        add(f"sample_per_ipc ipc{ipc}", per_dataset("sample_per_ipc", lambda job, ipc=ipc: job[3] == ipc), sampling(ipc))
    fe = cfg["baselines"]["features"]
    # train_feature_net: epochs over N_train, then one final "test" pass over the training images
    add("features", per_dataset("features"), lambda d: [((fe["epochs"] * f["feat_train"] + f["feat_fwd"]) * n_train[d],
                                                         "tf32", "convnet")])
    # select: a rule with learned features (kcenter/herding) embeds the training images once for every seed;
    # the others (random) do no GPU work
    embeds = lambda job: methods.get(names.base_method(job[1])).features  # noqa: E731
    add("select (embed)", per_dataset("select", embeds), lambda d: [(n_train[d] * f["feat_fwd"], "tf32", "convnet")])
    add("select (no GPU)", per_dataset("select", lambda job: not embeds(job)), lambda d: [(0, "tf32", "convnet")])
    # DM's FLOPs (a synthesis method of one's own has no FLOP model here: its jobs are left out, and the
    # cross-check below marks synthesize MISMATCH)
    dm = cfg["synthesis"]["dm"]
    for ipc in cfg["ipc"]:
        add(f"synthesize dm ipc{ipc}", per_dataset("synthesize", lambda job, ipc=ipc: job[1] == "dm" and job[2] == ipc),
            lambda d: [(dm["iterations"] * ncls[d] * (min(dm["batch_real"], n_train_pc) * f["dm_real"]
                                                      + ipc * f["dm_syn"]), "tf32", "dm")])
    # evaluation cells: the cost depends on (model, ipc, labels) only; soft labels add the teacher's forward
    # on every training batch (evaluate/trainer.py), and each (dataset, model) a teacher job (the hard
    # protocol on the whole training set)
    ev = cfg["evaluate"]
    soft = {p for p in protocols.PROTOCOLS if protocols.get(p).labels == "soft"}
    taught, epochs_t = set(grid.teachers(cfg)), grid.teacher_epochs(cfg)
    cells = Counter((c.model, c.ipc, c.dataset, c.protocol in soft) for c in grid.cells(cfg))
    for model in ev["nets"]:
        key = "convnet" if model == "convnet" else "resnet"
        for ipc in [*cfg["ipc"], None]:  # None: Full, the whole training set
            for labels_soft in (False, True):
                jobs = {d: cells[(model, ipc, d, labels_soft)] for d in datasets}
                if not any(jobs.values()):
                    continue
                epochs = grid.epochs_for(cfg, ipc, "soft" if labels_soft else "hard")

                def parts(d, ipc=ipc, epochs=epochs, model=model, key=key, labels_soft=labels_soft):
                    n = n_train[d] if ipc is None else ipc * ncls[d]
                    test = n_tests(epochs, ev["eval_every"]) * n_test_pc * ncls[d] * f[f"{model}_fwd"]
                    teacher = epochs * n * f[f"{model}_fwd"] if labels_soft else 0
                    return [(epochs * n * f[f"{model}_train"] + teacher + test, "tf32", key)]
                add(f"evaluate {model} ipc{grid.ipc_label(ipc)}" + (" soft" if labels_soft else ""), jobs, parts)
        add(f"teacher {model}", {d: int((d, model) in taught) for d in datasets}, lambda d, model=model, key=key: [
            (epochs_t * n_train[d] * f[f"{model}_train"]
             + n_tests(epochs_t, ev["eval_every"]) * n_test_pc * ncls[d] * f[f"{model}_fwd"], "tf32", key)])
    # diversity: Table 1's distilled sets (not full, not DM), VAE-encoded at every IPC, and embedded by the
    # feature ConvNet with every real training image once per job (k-NN precision/recall/density/coverage)
    t1 = cfg["tables"]["table1"]
    # one job per (dataset, method, distill seed) measures every seed's set
    measured = {(d, m, ds) for d, m, ds, _ in jobsets.distilled_sets(cfg, t1["datasets"], t1["methods"])}
    add("diversity", {d: sum(1 for x in measured if x[0] == d) for d in datasets},
        lambda d: [(len(seeds) * sum(cfg["ipc"]) * ncls[d] * f["vae_enc"], "tf32", "vae"),
                   ((n_train[d] + len(seeds) * sum(cfg["ipc"]) * ncls[d]) * f["feat_fwd"], "tf32", "convnet")])
    return rows


def snakemake_counts(configfile: Path) -> dict[str, int] | None:
    exe = Path(sys.executable).parent / "snakemake"
    exe = str(exe) if exe.exists() else shutil.which("snakemake")
    if exe is None:
        return None
    out = subprocess.run([exe, "-n", "all", "--configfile", str(configfile), "--quiet", "rules"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\n\s*\n", text, re.S)
    if not m:
        return None
    return {k: int(v) for k, v in (line.split() for line in m.group(1).strip().splitlines())}


def fmt_h(h: float) -> str:
    """1 decimal from 1 h up, else 2 significant figures."""
    return f"{h:,.1f}" if h >= 1 else f"{h:.2g}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "config/paper.yaml"))
    ap.add_argument("--train-per-class", type=int, default=1300,
                    help="training images per class when data.train_per_class is null (ImageNet: ~1300, varies)")
    ap.add_argument("--test-per-class", type=int, default=50,
                    help="test images per class when data.test_per_class is null (ImageNet val: 50)")
    ap.add_argument("--mfu-dit-train", type=float, default=0.30, help="DiT fine-tuning, bf16 (batch 8)")
    ap.add_argument("--mfu-dit-sample", type=float, default=0.40, help="DiT sampling, bf16 (batch 2 x 250)")
    ap.add_argument("--mfu-vae", type=float, default=0.25, help="SD VAE encode/decode, fp32 storage, TF32")
    ap.add_argument("--mfu-resnet", type=float, default=0.20, help="ResNetAP-10 / ResNet-18 training, TF32")
    ap.add_argument("--mfu-convnet", type=float, default=0.10, help="ConvNet-6 training/embedding, TF32")
    ap.add_argument("--mfu-dm", type=float, default=0.10, help="DM (ConvNet-6, fresh net every iteration), TF32")
    ap.add_argument("--gpus", type=int, default=8, help="GPUs for the wall-clock estimate")
    ap.add_argument("--no-snakemake", action="store_true", help="skip the snakemake -n cross-check")
    args = ap.parse_args()

    cfg = dd.load(args.config)
    dd.check(cfg)
    datasets = grid.datasets_used(cfg)
    n_classes = {len(DATASETS[d].labels) for d in datasets}
    stored = {DATASETS[d].resolution for d in datasets}
    assert len(n_classes) == 1 and len(stored) == 1, "one class count and one stored resolution expected"
    n_classes, stored = n_classes.pop(), stored.pop()
    n_train_pc = cfg["data"]["train_per_class"] or args.train_per_class
    assumed = cfg["data"]["train_per_class"] is None
    n_test_pc = cfg["data"]["test_per_class"] or args.test_per_class
    mfu = {"dit_train": args.mfu_dit_train, "dit_sample": args.mfu_dit_sample, "vae": args.mfu_vae,
           "resnet": args.mfu_resnet, "convnet": args.mfu_convnet, "dm": args.mfu_dm}

    f = count_models(cfg, n_classes, stored)
    shown = Path(args.config).relative_to(ROOT) if Path(args.config).is_absolute() else args.config
    print(f"config: {shown}; "
          f"datasets {', '.join(datasets)}; {n_classes} classes; train {n_train_pc}/class"
          f"{' (assumed: ImageNet train counts vary per class, ~1300)' if assumed else ''}"
          f", test {n_test_pc}/class; stored {stored} px, evaluated at {cfg['evaluate']['resolution']} px")
    print("\nPer-image FLOPs (FlopCounterMode on the meta device; 2 FLOPs per multiply-add):")
    g = f["dit_fwd"] / 1e9
    print(f"  DiT-XL/2-256 forward: {g:.1f} GFLOP = {g / 2:.1f} GMAC "
          f"(DiT paper: {DIT_PAPER_GMACS} 'Gflops', which are multiply-adds; ratio {g / 2 / DIT_PAPER_GMACS:.3f})")
    assert abs(g / 2 / DIT_PAPER_GMACS - 1) < 0.02, "DiT-XL/2 forward does not match the paper's count"
    print(f"  DiT-XL/2 fine-tuning step (DiffFit, fwd+bwd): {f['dit_train_difffit'] / 1e9:.1f} GFLOP "
          f"= {f['dit_train_difffit'] / f['dit_fwd']:.2f} x forward (full fine-tuning would be ~3x: frozen "
          f"weights need no weight gradients)")
    print(f"  SD VAE encoder 256 px: {f['vae_enc'] / 1e9:.1f} GFLOP; "
          f"decoder from 4x32x32: {f['vae_dec'] / 1e9:.1f} GFLOP")
    for name in cfg["evaluate"]["nets"]:
        print(f"  {name} {cfg['evaluate']['resolution']} px: forward {f[name + '_fwd'] / 1e9:.2f} GFLOP, "
              f"train step {f[name + '_train'] / 1e9:.2f} GFLOP ({f[name + '_train'] / f[name + '_fwd']:.2f} x)")
    print(f"  features net ({cfg['baselines']['features']['model']}, {stored} px): forward "
          f"{f['feat_fwd'] / 1e9:.2f}, train {f['feat_train'] / 1e9:.2f} GFLOP")
    print(f"  DM ({cfg['synthesis']['dm']['model']}, {stored} px, frozen random net): real embedding "
          f"{f['dm_real'] / 1e9:.2f}, synthetic fwd+bwd to pixels {f['dm_syn'] / 1e9:.2f} GFLOP")

    rows = grid_jobs(cfg, f, n_train_pc, n_test_pc, mfu)
    print("\nThroughput assumption: one H100 SXM 80 GB, dense peak bf16 989 TFLOP/s, TF32 495 TFLOP/s; "
          "model-FLOP utilisation (MFU) assumed, not measured:")
    print("  " + ", ".join(f"{k} {v:.0%}" for k, v in mfu.items())
          + "  (DiT runs under bf16 autocast; the VAE and the CNNs run fp32 with TF32 matmuls/convs, device.py)")

    print("\n| job type | jobs | TFLOP per job | GPU-h per job | GPU-h total |")
    print("|---|---:|---:|---:|---:|")
    tot_h, tot_jobs = 0.0, 0
    for r in rows:
        h = r["s"] / 3600
        tot_h += h * r["jobs"]
        tot_jobs += r["jobs"]
        print(f"| {r['type']} | {r['jobs']} | {r['flop'] / 1e12:,.1f} | {fmt_h(h)} | {fmt_h(h * r['jobs'])} |")
    tot_flop = sum(r["flop"] * r["jobs"] for r in rows)
    print(f"| **total** | {tot_jobs} | {tot_flop / 1e12:,.0f} (all jobs) | | **{fmt_h(tot_h)}** |")

    by_kind = Counter()
    for r in rows:
        by_kind[r["type"].split()[0]] += r["s"] * r["jobs"] / 3600
    print("\nShare of GPU-hours: " + ", ".join(f"{k} {v / tot_h:.0%}" for k, v in by_kind.most_common()))
    print(f"Sensitivity: all MFUs halved -> {fmt_h(2 * tot_h)} GPU-h; doubled -> {fmt_h(tot_h / 2)} GPU-h")
    # critical path: the longest dependency chain, whatever the GPU count
    longest = {k: max(r["s"] for r in rows if r["type"].split()[0] == k) / 3600 for k in by_kind}
    ev_distilled = max((r["s"] for r in rows if r["type"].startswith("evaluate") and "ipcall" not in r["type"]),
                       default=0) / 3600
    chains = {"encode -> finetune -> sample -> evaluate":
              sum(longest.get(k, 0) for k in ("encode", "finetune", "sample")) + ev_distilled,
              "features -> select -> evaluate": sum(longest.get(k, 0) for k in ("features", "select")) + ev_distilled,
              "encode -> sample_per_ipc -> evaluate": sum(longest.get(k, 0) for k in ("encode", "sample_per_ipc"))
              + ev_distilled,
              "synthesize -> evaluate": longest.get("synthesize", 0) + ev_distilled,
              "evaluate (full)": max((r["s"] for r in rows if "ipcall" in r["type"]), default=0) / 3600}
    crit_name, crit = max(chains.items(), key=lambda kv: kv[1])
    wall = max(tot_h / args.gpus, crit)
    print(f"Wall-clock on {args.gpus} GPUs: >= {fmt_h(wall)} h (total / {args.gpus} = {fmt_h(tot_h / args.gpus)} h "
          f"with perfect packing; critical path {crit_name} = {fmt_h(crit)} h)")

    if not args.no_snakemake:
        counts = snakemake_counts(Path(args.config))
        if counts is None:
            print("\nsnakemake -n: could not run or parse it")
            return
        mine = Counter()
        for r in rows:  # Full's evaluations have their own rule (evaluate_full: its seeds may differ)
            kind = r["type"].split()[0]
            mine["evaluate_full" if kind == "evaluate" and r["type"].endswith(grid.ipc_label(None)) else kind] += r["jobs"]
        cpu_only = sum(n for k, n in counts.items() if k != "total") - sum(mine.values())
        print("\nCross-check against `snakemake -n all --configfile ...` job stats "
              f"(snakemake total {counts.get('total')} = "
              f"{sum(mine.values())} jobs above + {cpu_only} without GPU work):")
        print("| rule | snakemake -n | this script | note |")
        print("|---|---:|---:|---|")
        notes = {"prepare": "CPU (image decoding), no GPU FLOPs", "parents": "CPU (MLflow)", "render": "CPU",
                 "cost": "CPU (sums the jobs' benchmark records)",
                 "figure1": "one PCA of cached latents (+ VAE-encoding 3 x 500 images), negligible", "all": "target"}
        for rule, n in counts.items():
            if rule == "total":
                continue
            note = notes.get(rule, "match" if mine.get(rule) == n else "MISMATCH")
            print(f"| {rule} | {n} | {mine.get(rule, '-')} | {note} |")


if __name__ == "__main__":
    main()
