"""Figures from evaluation results (matplotlib, no display needed).

Figure 4 of the paper: accuracy against lambda_real, lambda_gen and the memory size K,
one hyper-parameter at a time (the others at their params.yaml values), one line per
IPC, error bars = sample std over seeds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on build machines
import matplotlib.pyplot as plt  # noqa: E402

from .config import sweep_points  # noqa: E402
from .io import atomic_path  # noqa: E402

AXIS_LABELS = {
    "lambda_real": r"$\lambda_r$ (weight of $L_r$)",
    "lambda_gen": r"$\lambda_g$ (weight of $L_g$)",
    "memory_size": "memory size $K$ (latents per class)",
}


def sweep_series(cfg: dict, agg: dict) -> dict[str, dict[str, list[tuple]]]:
    """key -> ipc -> [(value, mean, std, n)] sorted by value, from ``tables.aggregate`` output."""
    sw = cfg["sweeps"]
    out: dict[str, dict[str, list[tuple]]] = {}
    for key, value, method in sweep_points(cfg):
        for ipc in cfg["ipc"]:
            a = agg.get((sw["dataset"], method, str(ipc), sw["model"]))
            if a is not None:
                out.setdefault(key, {}).setdefault(str(ipc), []).append((value, a["mean"], a["std"], a["n"]))
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
        for ipc, pts in sorted(series[key].items(), key=lambda kv: int(kv[0])):
            xs, ms, ss = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
            ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, label=f"IPC {ipc}")
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
        ax.legend(fontsize=9)
    fig.suptitle(f"{sw['method']} on {sw['dataset']} ({sw['model']}): final-epoch accuracy, "
                 f"mean ± std over {len(cfg['seeds'])} seeds; dashed: default", fontsize=11)
    fig.tight_layout()
    for path, fmt in ((out_png, "png"), (out_pdf, "pdf")):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)
    plt.close(fig)
    return series
