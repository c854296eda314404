"""Figures (matplotlib, no display needed).

Figure 4 of the paper: accuracy against lambda_real, lambda_gen and the memory size K,
one hyper-parameter at a time (the others at their params.yaml values), one line per
IPC, error bars = sample std over seeds.
Figure 1: the distilled sets' VAE latents against the real ones in a 2-D PCA plane.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on build machines
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..evaluate.protocols import HARD  # noqa: E402
from ..experiment.grid import ipc_label, sweep_points  # noqa: E402
from ..io import atomic_path  # noqa: E402

# savefig metadata: PDFs without a creation date, so a re-render of the same numbers is the same file
NO_DATE = {"png": None, "pdf": {"CreationDate": None}}
AXIS_LABELS = {
    "lambda_real": r"$\lambda_r$ (weight of $L_r$)",
    "lambda_gen": r"$\lambda_g$ (weight of $L_g$)",
    "memory_size": "memory size $K$ (latents per class)",
}


def sweep_series(cfg: dict, agg: dict) -> dict[str, dict[int, list[tuple]]]:
    """key -> ipc -> [(value, mean, std, n)] sorted by value, from ``tables.aggregate`` output."""
    sw = cfg["sweeps"]
    out: dict[str, dict[int, list[tuple]]] = {}
    for key, value, method in sweep_points(cfg):
        for ipc in cfg["ipc"]:
            a = agg.get((sw["dataset"], method, ipc, sw["model"], HARD))
            if a is not None:
                out.setdefault(key, {}).setdefault(ipc, []).append((value, a["mean"], a["std"], a["n"]))
    for by_ipc in out.values():
        for series in by_ipc.values():
            series.sort()
    return out


def figure4(cfg: dict, agg: dict, out_png, out_pdf) -> dict:
    """Write Figure 4 (PNG for the report, PDF for papers); returns the plotted series."""
    series = sweep_series(cfg, agg)
    keys = [k for k in AXIS_LABELS if k in series]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4.2 * max(1, len(keys)), 3.6), squeeze=False)
    sw = cfg["sweeps"]
    for ax, key in zip(axes[0], keys):
        for ipc, pts in sorted(series[key].items()):
            xs, ms, ss = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
            ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, label=f"IPC {ipc_label(ipc)}")
        ax.axvline(cfg["finetune"][key], color="0.6", lw=0.8, ls="--")  # the params.yaml value
        values = sorted({p[0] for pts in series[key].values() for p in pts})
        if values[-1] > 8 * values[0] > 0:  # factor steps: even spacing on a log axis
            ax.set_xscale("log")
        ax.set_xticks(values, [f"{v:g}" for v in values])  # the swept values only, no log minor labels
        ax.minorticks_off()
        ax.set_xlabel(AXIS_LABELS[key], fontsize=11)
        ax.set_ylabel("test accuracy (%)", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{sw['method']} on {sw['dataset']} ({sw['model']}): final-epoch accuracy, "
                 f"mean ± std over {len(cfg['seeds'])} seeds; dashed: default", fontsize=11)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:  # one legend for every panel, below them: inside a panel it hid points
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=10, frameon=False)
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 1))
    for path, fmt in ((out_png, "png"), (out_pdf, "pdf")):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, metadata=NO_DATE[fmt])
    plt.close(fig)
    return series


def pca_2d(real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), components (D, 2)) of flattened real latents (N, D): the top-2 right singular
    vectors of the centred data (torch.linalg.svd: exact and deterministic)."""
    x = real.flatten(1).double()
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)  # vh (min(N, D), D)
    return mean, vh[:2].T


def figure1(real: torch.Tensor, real_labels: torch.Tensor, sets: dict[str, tuple[torch.Tensor, torch.Tensor]],
            class_names: list[str], title: str, out_png, out_pdf) -> dict:
    """Figure 1: real latents (grey) and each distilled set's latents (coloured by class) in the plane
    of the real latents' first two principal components, one panel per method. ``sets``: method ->
    (latents (n, c, h, w), labels (n,)). Returns each panel's within-class similarity and coverage."""
    from ..evaluate.diversity import coverage, within_class_similarity

    mean, comps = pca_2d(real)
    project = lambda z: ((z.flatten(1).double() - mean) @ comps).numpy()  # noqa: E731  (n, 2)
    r2 = project(real)
    fig, axes = plt.subplots(1, len(sets), figsize=(4.6 * len(sets), 4.4), squeeze=False, sharex=True, sharey=True)
    cmap = plt.get_cmap("tab10")
    stats = {}
    for ax, (method, (z, y)) in zip(axes[0], sets.items()):
        ax.scatter(r2[:, 0], r2[:, 1], s=3, c="0.82", lw=0, label="real (training)", rasterized=True)
        d2 = project(z)
        for c in range(len(class_names)):
            keep = (y == c).numpy()
            ax.scatter(d2[keep, 0], d2[keep, 1], s=22, color=cmap(c % 10), edgecolor="k", lw=0.3,
                       label=class_names[c])
        stats[method] = {"similarity": within_class_similarity(z, y), "coverage": coverage(real, real_labels, z, y)}
        ax.set_title(f"{method}: similarity {stats[method]['similarity']:.3f}, "
                     f"coverage {100 * stats[method]['coverage']:.1f}%", fontsize=10)
        ax.set_xlabel("PC 1 of real latents", fontsize=10)
        ax.grid(alpha=0.2)
    axes[0][0].set_ylabel("PC 2 of real latents", fontsize=10)
    axes[0][-1].legend(fontsize=8, markerscale=1.2, loc="best", framealpha=0.85)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    for path, fmt in ((out_png, "png"), (out_pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, metadata=NO_DATE[fmt])
    plt.close(fig)
    return stats
