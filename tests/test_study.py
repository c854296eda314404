"""The mechanism study's grid, contrasts and rendering on hand-made result files."""

import json

import pytest

from divdistill.experiment import grid, names
from divdistill.report.study import collect, compute, contrasts, render

CFG = {
    "seeds": [0, 1, 2], "ipc": [10], "finetune": {"max_steps": 6}, "sample": {"guidance": 4.0},
    "study": {"dataset": "fashion-hard", "model": "convnet", "methods": ["dit", "difffit", "ours"],
              "max_steps": [3, 6], "guidance": [1, 4], "distill_seeds": [0, 1]},
}


def test_contrasts_of_a_small_grid():
    got = [(kind, a["name"], b["name"]) for kind, a, b in contrasts(CFG)]
    assert got == [
        ("fine-tuning itself", "difffit-max_steps-3", "dit"),
        ("memory", "ours-max_steps-3", "difffit-max_steps-3"),
        ("fine-tuning itself", "difffit", "dit"),
        ("memory", "ours", "difffit"),
        ("length", "difffit", "difffit-max_steps-3"),  # the longest (6, the base name) - the shortest
        ("length", "ours", "ours-max_steps-3"),
        ("guidance", "dit", "dit-guidance-1"),  # at the longest length for fine-tuned methods
        ("guidance", "difffit", "difffit-guidance-1"),
        ("guidance", "ours", "ours-guidance-1"),
    ]


def _write(tmp_path, acc):
    """Evaluation and diversity JSONs for every study cell; acc(method, distill_seed, seed) -> accuracy."""
    results, diversity = [], []
    for c in grid.study_cells(CFG):
        p = tmp_path / f"{c.method}-{c.distill_seed}-{c.seed}.json"
        p.write_text(json.dumps({"cell": {"dataset": c.dataset, "method": c.method, "ipc": c.ipc, "model": c.model,
                                          "distill_seed": c.distill_seed, "seed": c.seed},
                                 "test_acc": acc(c.method, c.distill_seed, c.seed)}))
        results.append(p)
        q = tmp_path / f"div-{c.method}-{c.distill_seed}-{c.seed}.json"
        q.write_text(json.dumps({"method": c.method, "distill_seed": c.distill_seed, "seed": c.seed,
                                 "ipc": {"10": {"similarity": 0.5, "coverage": 0.1, "prdc_coverage": 0.2,
                                                "prdc_precision": 0.9, "prdc_recall": 0.3, "prdc_density": 1.1}}}))
        diversity.append(q)
    return results, diversity


def test_paired_contrasts_from_result_files(tmp_path):
    # ours is difffit + 2 + s / 10 points on every (distill_seed, seed); difffit differs from DiT by seed-dependent
    # amounts: per seed s, difffit averaged over its two distillation seeds minus DiT = 1 + s
    def acc(method, ds, s):
        base = names.base_method(method)
        if base == "dit":
            return 0.50
        value = 0.50 + (1 + s) / 100 + (ds - 0.5) / 100  # distill seeds 0/1: -0.5/+0.5 points around
        return value + ((2 + s / 10) / 100 if base == "ours" else 0.0)

    res = compute(CFG, collect(*_write(tmp_path, acc)))
    rows = {(r["kind"], r["a"], r["b"]): r for r in res["contrasts"]}
    memory = rows[("memory", "ours", "difffit")]["test_acc"]
    assert memory["pairing"] == "(distill_seed, seed)" and memory["n"] == 6
    assert memory["mean"] == pytest.approx(2.1)  # differences 2.0, 2.1, 2.2, each at both distill seeds
    assert memory["sd"] == pytest.approx((0.04 / 5) ** 0.5)  # squared deviations 0.01 x 4 + 0 x 2 over n - 1
    tuned = rows[("fine-tuning itself", "difffit", "dit")]["test_acc"]
    assert tuned["pairing"].startswith("seed") and tuned["n"] == 3
    assert tuned["mean"] == pytest.approx(2.0)  # (1 + 2 + 3) / 3
    assert tuned["sd"] == pytest.approx(1.0)  # differences 1, 2, 3
    # the shares are printed in percent: 0.2 -> 20 %, equal on both sides -> 0
    assert rows[("memory", "ours", "difffit")]["prdc_coverage"]["mean"] == pytest.approx(0.0)
    point = next(p for p in res["points"] if p["name"] == "ours-guidance-1")
    assert point["prdc_coverage"]["mean"] == pytest.approx(20.0) and point["test_acc"]["n"] == 6


def test_render_writes_tables_metrics_and_figure(tmp_path):
    results, diversity = _write(tmp_path, lambda m, ds, s: 0.5 + 0.01 * s + 0.001 * len(m))
    render(CFG, results, diversity, tmp_path / "study")
    md = (tmp_path / "study" / "study.md").read_text()
    assert "## Contrasts" in md and "Ours, 6 steps, guidance 4 − DiffFit (no memory), 6 steps, guidance 4" in md
    assert "MDD" in md and "p " in md
    assert json.loads((tmp_path / "study" / "metrics.json").read_text())["contrasts"]
    for name in ("study.html", "figure.png", "figure.pdf"):
        assert (tmp_path / "study" / name).stat().st_size > 500
