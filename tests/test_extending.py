"""Extending the suite without editing the package (README "Extending"): an eviction rule and a
method of one's own from params.yaml, reaching the checks, the jobs, the tables and Figure 4; a
dataset from an existing source in one line."""

import re
import subprocess

import pytest
import torch
import yaml

from divdistill.data import datasets, registry
from divdistill.experiment import config as dd
from divdistill.experiment import grid, methods, names
from divdistill.io import read_json, write_json
from divdistill.method.finetune import FinetuneConfig
from divdistill.method.memory import EVICTIONS, ClassMemory
from divdistill.report.render import render_all

from .conftest import FASHION, ROOT, needs_fashion, project_env

RULE = "tests.extension.rules:evict_newest"  # a module outside the package
METHOD, LABEL = "realmax-gennewest", "real max / gen newest"


@pytest.fixture
def extended():
    """params.yaml with the rule, the method in Table 3 and as Figure 4's method; the name tables
    are restored afterwards (they are process-wide)."""
    saved_rules, saved_methods = dict(EVICTIONS), dict(methods._TABLE)
    cfg = dd.load(ROOT / "params.yaml")
    cfg["evictions"] = {"newest": RULE}
    cfg["methods"] = {METHOD: {"real_evict": "max", "gen_evict": "newest", "label": LABEL}}
    cfg["tables"]["table3"]["methods"].append(METHOD)
    cfg["sweeps"]["method"] = METHOD
    yield cfg
    EVICTIONS.clear()
    EVICTIONS.update(saved_rules)
    methods._TABLE.clear()
    methods._TABLE.update(saved_methods)


def test_own_rule_and_method_pass_the_checks_and_reach_the_job(extended):
    cfg = extended
    dd.check(cfg)  # imports the rule, adds the method to the name table
    assert methods.get(METHOD).evict == ("max", "newest") and methods.label(METHOD) == LABEL
    order = methods.names()
    assert order.index("realmax-genmin") < order.index(METHOD) < order.index("full")  # before Full
    settings = names.finetune_settings(cfg, METHOD)
    assert (settings["real_evict"], settings["gen_evict"], settings["evictions"]) == ("max", "newest",
                                                                                      {"newest": RULE})
    assert "evictions" not in names.finetune_settings(cfg, "ours")  # a new rule re-runs nothing else
    assert FinetuneConfig(**settings).gen_evict == "newest"
    # the rule itself, in a memory: the newest element goes, the first K stay
    memory = ClassMemory(2, "newest")
    x = torch.randn(3, 4, 2, 2)
    memory.add(x)
    assert torch.equal(memory.tensor(), x[:2])
    # its variants are fine-tuned models of their own (Figure 4, the study)
    variant = names.variant_name(METHOD, "lambda_gen", 0.032)
    assert re.fullmatch(names.finetuned_method_pattern(), variant)
    assert names.finetune_settings(cfg, variant)["lambda_gen"] == 0.032
    assert any(c.method == variant for c in grid.sweep_cells(cfg))


def test_own_method_gets_its_column_in_table3_and_figure4(extended, tmp_path):
    cfg = extended
    dd.check(cfg)
    paths = []
    for i, c in enumerate(grid.cells(cfg)):  # a made-up accuracy per evaluation
        acc = 0.30 + 0.01 * (i % 7) + (0.2 if names.base_method(c.method) == METHOD else 0.0)
        path = tmp_path / c.path
        write_json(path, {"cell": {**vars(c), "ipc": grid.ipc_label(c.ipc)}, "test_acc": acc, "best_test_acc": acc, "run_id": f"r{i}",
                          "curve": [{"epoch": 1, "train_loss": 1.0, "test_acc": acc}]})
        paths.append(str(path))
    out = tmp_path / "reports"
    render_all(cfg, paths, out / "tables", out / "metrics.json", out / "plots", out_figures=out / "figures",
               out_sweeps=out / "sweeps")
    md = (out / "tables" / "table3.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Protocol | Dataset"))
    assert LABEL in header and header.index("real max / gen min") < header.index(LABEL)
    row = next(line for line in md.splitlines() if line.startswith("| hard | fashion-hard | 10 | ConvNet"))
    split = lambda line: [x.strip() for x in line.split("|")[1:-1]]  # noqa: E731
    value = split(row)[split(header).index(LABEL)]
    assert re.fullmatch(r"\*?\*?5\d\.\d ± \d\.\d\*?\*?", value), value  # its made-up 50-56 %, over 6 seeds
    assert METHOD in read_json(out / "metrics.json")["table3"]["fashion-hard"]
    assert (out / "figures" / "figure4.png").stat().st_size > 1000
    points = (out / "sweeps" / "lambda_gen-ipc10.csv").read_text().splitlines()
    assert len(points) == 1 + len(cfg["sweeps"]["lambda_gen"])


def test_a_bad_rule_or_method_is_refused_before_any_job(extended):
    for bad, key in (({"newest": "tests.extension.rules:nope"}, "evictions"),
                     ({"newest": "no.such.module:evict"}, "evictions")):
        with pytest.raises(dd.ConfigError, match=key):
            dd.check({**extended, "evictions": bad})
    unknown = {METHOD: {"real_evict": "max", "gen_evict": "oldest"}}
    with pytest.raises(dd.ConfigError, match=f"methods.{METHOD}.gen_evict: unknown eviction rule 'oldest'"):
        dd.check({**extended, "methods": unknown})
    clash = {"ours": {"real_evict": "min", "gen_evict": "min"}}
    with pytest.raises(dd.ConfigError, match="taken by another method"):
        dd.check({**extended, "methods": clash})


@pytest.mark.workflow
def test_snakemake_plans_the_own_method_with_its_rule(extended, tmp_path):
    """The workflow, not just Python: a dry run of the smoke DAG with the overlay plans the method's
    fine-tuning with the rule's module in its parameters."""
    overlay = tmp_path / "mine.yaml"
    smoke = dd.load(ROOT / "config" / "smoke.yaml")
    overlay.write_text(yaml.safe_dump({"evictions": extended["evictions"], "methods": extended["methods"],
                                       "tables": {**smoke["tables"], "table3": {
                                           **smoke["tables"]["table3"],
                                           "methods": [*smoke["tables"]["table3"]["methods"], METHOD]}}}))
    env = {**project_env(), "PYTHONPATH": str(ROOT)}  # where the rule's module lives
    p = subprocess.run(["snakemake", "-n", "-p", "--configfile", "config/smoke.yaml", str(overlay), "--", "all"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"results/finetuned/fashion-hard/{METHOD}/distill0" in p.stdout
    assert '"evictions": {"newest": "tests.extension.rules:evict_newest"}' in p.stdout
    assert '"gen_evict": "newest"' in p.stdout


@needs_fashion
def test_a_dataset_from_an_existing_source_is_one_line(monkeypatch, tmp_path):
    # the one line: a DATASETS entry (data/registry.py)
    monkeypatch.setitem(registry.DATASETS, "fashion-shoes", registry._fashion("fashion-shoes", (5, 7, 9), "footwear"))
    cfg = dd.load(ROOT / "params.yaml")
    cfg["tables"]["table2"]["datasets"] = ["fashion-shoes"]
    dd.check(cfg)
    assert {c.dataset for c in grid.cells(cfg)} >= {"fashion-shoes"}
    meta = datasets.prepare("fashion-shoes", out=tmp_path / "shoes", root=FASHION, train_per_class=4,
                            test_per_class=2, split_seed=0)
    assert meta["class_names"] == ["Sandal", "Sneaker", "Ankle boot"] and meta["labels"] == [5, 7, 9]
    train = datasets.load_split(tmp_path / "shoes", "train")
    assert train.images.shape == (12, 1, 32, 32) and train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4


KINDS = {  # params.yaml entries of one's own method of each kind (tests/extension/kinds.py)
    "methods": {"brightest": {"kind": "selection", "function": "tests.extension.kinds:brightest",
                              "label": "Brightest"},
                "pooled": {"kind": "synthesis", "function": "tests.extension.kinds:pooled_means",
                           "label": "Pooled means"},
                "weak": {"recipe": "ours", "sampler": "weak", "label": "Ours, weak guidance"}},
    "samplers": {"weak": {"function": "tests.extension.kinds:weak_guidance", "factor": 0.5}},
    "synthesis": {"pooled": {"pool": 4}},
}


@needs_fashion
@pytest.mark.slow
@pytest.mark.workflow
def test_a_method_of_each_kind_from_params_alone(tmp_path):
    """A selection rule, a synthesis method and a sampler of one's own (one module outside the package
    plus params.yaml entries) run through the smoke DAG into Table 1 and the comparisons, with nothing
    under src/ or workflow/ changed (the project is a git repository: its status says so)."""
    from .conftest import new_project, run

    smoke = dd.load(ROOT / "config" / "smoke.yaml")
    smoke.update(KINDS)
    smoke["tables"] = {"table1": {**smoke["tables"]["table1"],
                                  "methods": ["random", "brightest", "pooled", "dit", "ours", "weak", "full"]}}
    smoke.pop("sweeps", None)
    project = new_project(tmp_path / "p", smoke)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"]):
        run(cmd, project)
    env = {**project_env(), "PYTHONPATH": str(ROOT)}  # where tests/extension lives
    run(["snakemake", "--cores", "2", "all"], project, env=env)
    md = (project / "reports/tables/table1.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Protocol | Dataset"))
    assert all(label in header for label in ("Brightest", "Pooled means", "Ours, weak guidance")), header
    compared = (project / "reports/tables/comparisons.md").read_text()
    for label in ("Brightest − Random", "Pooled means − Random", "Ours, weak guidance − Random"):
        assert label in compared, compared
    # each ran its own function: the brightest picks, the pooled pixels, the weakened guidance
    from divdistill.io import load_tensors

    _, meta = load_tensors(project / "results/distilled/fashion-hard/pooled/ipc2/distill0-seed0.safetensors")
    assert meta["pool"] == 4 and meta["method"] == "pooled"
    _, meta = load_tensors(project / "results/distilled/fashion-hard/weak/distill0-seed0.safetensors")
    assert meta["sampler"] == "weak" and meta["generator"] == "results/finetuned/fashion-hard/ours/distill0"
    assert not (project / "results/finetuned/fashion-hard/weak").exists()  # Ours' fine-tuned DiT, sampled
    status = run(["git", "status", "--porcelain", "--", "src", "workflow"], project).stdout
    assert status == "", status


def test_recipes_and_the_pretrained_dit_as_generators_of_ones_own():
    """A method sampling Ours' fine-tuned DiT follows Ours' fine-tuning seeds (it samples each of those
    models); one with neither a recipe nor evictions samples the pretrained DiT."""
    saved_methods, saved_samplers = dict(methods._TABLE), dict(methods.SAMPLERS)
    try:
        cfg = dd.load(ROOT / "params.yaml")
        cfg["distill_seeds"] = [1, 2]
        cfg["methods"] = {"ours-mgd": {"recipe": "ours", "sampler": "mode_guidance"},
                          "dit-mgd": {"sampler": "mode_guidance", "label": "DiT, mode guidance"}}
        cfg["tables"]["table1"]["methods"] += ["ours-mgd", "dit-mgd"]
        dd.check(cfg)
        assert grid.distill_seeds_for(cfg, "ours-mgd") == [1, 2] == grid.distill_seeds_for(cfg, "ours")
        assert names.finetuned_name("ours-mgd") == "ours" and names.finetuned_name("dit-mgd") is None
        assert grid.distill_seeds_for(cfg, "dit-mgd") == [0] and methods.get("dit-mgd").per_ipc
        both = {**cfg, "methods": {"x": {"recipe": "ours", "real_evict": "max", "gen_evict": "max"}}}
        with pytest.raises(dd.ConfigError, match="methods.x: give real_evict"):
            dd.check(both)
    finally:
        methods._TABLE.clear()
        methods._TABLE.update(saved_methods)
        methods.SAMPLERS.clear()
        methods.SAMPLERS.update(saved_samplers)
