"""params.yaml relations and the up-front input check (what onstart runs before any job)."""

import copy
import re

import pytest

from divdistill.experiment import config as dd
from divdistill.experiment import grid, names

from .conftest import ROOT

DEMO = dd.load(ROOT / "params.yaml")
PAPER = dd.load(ROOT / "config" / "paper.yaml")
STUDY = {**DEMO, **dd.load(ROOT / "config" / "study.yaml")}  # as snakemake --configfile params.yaml config/study.yaml


def test_demo_and_paper_configs_pass_the_relation_checks():
    dd.check(DEMO)
    dd.check(PAPER)
    dd.check(STUDY)


def test_prepare_args_per_source():
    assert dd.prepare_args(DEMO, "fashion-hard") == {
        "root": DEMO["data"]["fashion_root"], "train_per_class": 1000, "test_per_class": 300, "split_seed": 0}
    args = dd.prepare_args(PAPER, "imagewoof")
    assert args["root"] == PAPER["data"]["imagenet_root"] and args["layout"] == "imagenet"
    assert args["train_per_class"] is None  # every image


def test_missing_fashion_root_is_named_with_the_install_command(tmp_path):
    cfg = copy.deepcopy(DEMO)
    cfg["data"]["fashion_root"] = str(tmp_path / "nowhere")
    problems = dd.missing_inputs(cfg)
    assert len(problems) == 4  # two splits x (images, labels)
    assert all(str(tmp_path / "nowhere") in p and "apt-get install -y dataset-fashion-mnist" in p
               for p in problems)


def test_missing_imagenet_and_weights_listed_together(tmp_path):
    cfg = copy.deepcopy(PAPER)
    cfg["data"]["imagenet_root"] = str(tmp_path / "imagenet")
    for role in ("vae", "vae_decoder", "dit"):
        cfg["generator"][role] = str(tmp_path / role)
    text = "\n".join(dd.missing_inputs(cfg))
    assert str(tmp_path / "imagenet") in text
    for role, repo in (("vae", "stabilityai/sd-vae-ft-ema"), ("vae_decoder", "stabilityai/sd-vae-ft-mse"),
                       ("dit", "facebook/DiT-XL-2-256")):
        assert str(tmp_path / role) in text and repo in text


@pytest.mark.parametrize("edit, needle", [
    (lambda c: c["data"].update(train_per_class=7000), "data.train_per_class = 7000"),
    (lambda c: c["data"].pop("fashion_root"), "data.fashion_root"),
    (lambda c: c["tables"]["table1"].update(reported=["dm"]), "no published numbers for 'dm'"),
])
def test_relation_errors_name_the_key(edit, needle):
    cfg = copy.deepcopy(DEMO)
    edit(cfg)
    with pytest.raises(grid.ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        dd.check(cfg)


def test_sweep_variants_are_methods_of_their_own():
    assert names.split_method("ours-lambda_gen-0.032") == ("ours", {"lambda_gen": 0.032})
    assert names.split_method("minimax-memory_size-16") == ("minimax", {"memory_size": 16})
    assert names.split_method("realmin-genmax") == ("realmin-genmax", {})  # a hyphenated base, no variant
    assert grid.distill_seeds_for({"distill_seeds": [3, 4]}, "ours-lambda_real-0.001") == [3, 4]
    import re

    pattern = re.compile(names.finetuned_method_pattern())
    assert pattern.fullmatch("ours-lambda_real-0.0005") and pattern.fullmatch("realmax-genmin")
    assert not pattern.fullmatch("dit") and not pattern.fullmatch("random-lambda_real-0.1")


def test_variants_chain_keys_in_one_order_with_one_spelling_per_value():
    name = names.variant_name("ours", guidance=2.0, max_steps=5000)  # keys in VARIANT_KEYS order, 2.0 -> "2"
    assert name == "ours-max_steps-5000-guidance-2"
    assert names.split_method(name) == ("ours", {"max_steps": 5000, "guidance": 2.0})
    assert names.variant_name(name) == name  # parse and rebuild: the same name
    assert names.split_method("ours-lambda_gen-1e-05-guidance-1") == ("ours", {"lambda_gen": 1e-05, "guidance": 1.0})
    assert names.split_method("ours-paper-code-guidance-2") == ("ours-paper-code", {"guidance": 2.0})
    with pytest.raises(ValueError, match="not a variant key: epochs"):
        names.variant_name("ours", epochs=3)
    # a sample key samples the same fine-tuned model; a finetune key makes a model of its own
    assert names.finetuned_name("ours-max_steps-5000-guidance-2") == "ours-max_steps-5000"
    assert names.finetuned_name("minimax-guidance-1") == "minimax"
    cfg = {"finetune": {"max_steps": 300, "lambda_gen": 0.008, "threads": 2},
           "sample": {"guidance": 4.0, "steps": 50, "threads": 2}}  # threads: a job's resources, not its settings
    assert names.finetune_settings(cfg, "ours-max_steps-5000-guidance-2") == {
        "max_steps": 5000, "lambda_gen": 0.008, "real_evict": "max", "gen_evict": "max"}
    assert names.sample_settings(cfg, "ours-max_steps-5000-guidance-2") == {"guidance": 2.0, "steps": 50}
    assert names.finetune_settings(cfg, "difffit-guidance-1") == {
        "max_steps": 300, "lambda_gen": 0.0, "lambda_real": 0.0, "real_evict": "fifo", "gen_evict": "fifo"}
    finetuned, sampled = re.compile(names.finetuned_method_pattern()), re.compile(names.generative_method_pattern())
    assert finetuned.fullmatch("ours-max_steps-5000") and not finetuned.fullmatch("ours-guidance-2")
    assert sampled.fullmatch("ours-max_steps-5000-guidance-2") and sampled.fullmatch("dit-guidance-1")
    assert not sampled.fullmatch("dit-max_steps-5") and not sampled.fullmatch("ours-guidance-2-max_steps-5")


def test_study_grid_shares_the_demo_runs_at_the_demo_settings():
    points = grid.study_points(STUDY)
    st = STUDY["study"]
    tuned = [m for m in st["methods"] if m != "dit"]
    assert len(points) == len(st["guidance"]) * (1 + len(tuned) * len(st["max_steps"]))
    names = {(p["method"], p["max_steps"], p["guidance"]): p["name"] for p in points}
    assert names[("ours", 300, 4.0)] == "ours"  # params.yaml's cap and guidance: Table 1's own runs
    assert names[("ours", 5000, 2.0)] == "ours-max_steps-5000-guidance-2"
    assert names[("dit", None, 1.0)] == "dit-guidance-1"
    assert names[("difffit", 300, 4.0)] == "difffit"
    assert len(set(names.values())) == len(points)  # one name per point
    cells = grid.study_cells(STUDY)
    per_point = {p["name"]: len(st["distill_seeds"] if p["method"] != "dit" else [0]) * len(STUDY["seeds"])
                 for p in points}
    assert len(cells) == sum(per_point.values())
    assert {c.distill_seed for c in cells if c.method == "ours-max_steps-5000"} == set(st["distill_seeds"])
    assert grid.study_cells(DEMO) == [] and grid.cells(STUDY) == grid.cells(DEMO)  # the demo's grid is untouched


@pytest.mark.parametrize("edit, needle", [
    (lambda c: c["study"].update(max_steps=[300, 5001]),
     "study.max_steps: 5001 is more than finetune.epochs' worth on fashion-hard (5000 steps of 8)"),
    (lambda c: c["study"].update(model="vgg"), "study.model: 'vgg' has no entry under evaluate.nets"),
    (lambda c: c["study"].update(dataset="cifar"), "study.dataset: unknown dataset 'cifar'"),
    (lambda c: c["evaluate"].update(seeds_full=9), "evaluate.seeds_full = 9: more than the 6 seeds there are"),
])
def test_study_and_full_seed_errors_name_the_key(edit, needle):
    cfg = copy.deepcopy(STUDY)
    edit(cfg)
    with pytest.raises(grid.ConfigError, match=re.escape(needle)):
        dd.check(cfg)


def test_full_runs_on_the_first_seeds_full_seeds():
    assert grid.seeds_for(DEMO, "full") == DEMO["seeds"][:DEMO["evaluate"]["seeds_full"]]
    assert grid.seeds_for(DEMO, "ours") == DEMO["seeds"]
    cfg = copy.deepcopy(DEMO)
    cfg["evaluate"]["seeds_full"] = None
    assert grid.seeds_for(cfg, "full") == cfg["seeds"]
    full = [c for c in grid.cells(DEMO) if c.method == "full"]
    assert {c.seed for c in full} == set(grid.seeds_for(DEMO, "full"))


def test_paper_sweeps_reuse_the_default_point_and_add_the_rest():
    points = grid.sweep_points(PAPER)
    sw, ft = PAPER["sweeps"], PAPER["finetune"]
    assert len(points) == sum(len(sw[k]) for k in grid.SWEEP_KEYS)
    defaults = [m for k, v, m in points if v == ft[k]]
    assert defaults == ["ours"] * 3  # 0.002, 0.008 and 64 are Table 1's own runs
    variants = {m for _, _, m in points} - {"ours"}
    extra = [c for c in grid.cells(PAPER) if c.method in variants]
    assert len(extra) == len(variants) * len(PAPER["ipc"]) * len(PAPER["seeds"])
    assert {c.model for c in extra} == {sw["model"]} and {c.dataset for c in extra} == {sw["dataset"]}


def _float_keys(node, path=()):
    """Key paths of every float leaf of a config (lists included)."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _float_keys(v, path + (k,))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _float_keys(v, path + (i,))]
    return [path] if isinstance(node, float) else []


def _name(path) -> str:
    out = ""
    for k in path:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


def test_every_float_parameter_must_be_finite():
    """JSON schema's bounds let nan through (every comparison with nan is false): the check beside the
    schema refuses nan and inf for every float of every section, naming the key."""
    keys = _float_keys(DEMO)
    sections = {p[0] for p in keys}
    assert {"pretrain", "finetune", "sample", "baselines", "evaluate"} <= sections
    for path in keys:
        for bad in (float("nan"), float("inf"), float("-inf")):
            cfg = copy.deepcopy(DEMO)
            node = cfg
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = bad
            with pytest.raises(grid.ConfigError, match=re.escape(f"{_name(path)} = {bad}: must be a finite number")):
                dd.check(cfg)


def test_job_arguments_refuse_nan_and_infinity():
    from divdistill.jobs.common import json_arg as _json

    assert _json('{"guidance": 4.0}') == {"guidance": 4.0}
    for text in ('{"guidance": NaN}', '{"lambda_gen": Infinity}', '{"x": [-Infinity]}'):
        with pytest.raises(SystemExit, match="not a finite number"):
            _json(text)


def test_unknown_pretraining_dataset_is_named():
    cfg = copy.deepcopy(DEMO)
    cfg["pretrain"]["dataset"] = "fashion-mnsit"
    with pytest.raises(grid.ConfigError, match="pretrain.dataset: unknown dataset 'fashion-mnsit'"):
        dd.check(cfg)


def test_fine_tuning_defaults_are_the_paper_config():
    """FinetuneConfig's defaults are the paper's hyper-parameters, the values config/paper.yaml runs
    (jobs always pass every setting: experiment/names.py finetune_settings); plumbing keys aside."""
    import dataclasses

    from divdistill.method.finetune import FinetuneConfig

    paper = {**dd.load(ROOT / "params.yaml")["finetune"], **dd.load(ROOT / "config" / "paper.yaml")["finetune"]}
    plumbing = {"checkpoint_every", "threads", "log_every"}
    checked = 0
    for f in dataclasses.fields(FinetuneConfig):
        if f.name in paper and f.name not in plumbing:
            assert f.default == paper[f.name], f.name
            checked += 1
    assert checked >= 10
    settings = names.finetune_settings(dd.load(ROOT / "params.yaml"), "ours")
    assert set(settings) <= {f.name for f in dataclasses.fields(FinetuneConfig)}  # a job's settings, all parsed
