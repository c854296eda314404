"""The cost table from benchmark records written by hand (not from the test's own timings): each
method's core-seconds are its own jobs' wall seconds x threads, shared work apart, evaluation left out."""

import pytest

from divdistill.experiment import config as dd
from divdistill.experiment import methods
from divdistill.report.cost import costs, render_cost

from .conftest import ROOT


def write_tsv(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s\th:m:s\tmax_rss\tcpu_time\n" f"{seconds}\t0:00:00\t1.0\t0.1\n")


@pytest.fixture
def cfg():
    c = dd.load(ROOT / "config" / "smoke.yaml")
    c.update(seeds=[0, 1], distill_seeds=[0], ipc=[2, 5])
    c["sample"]["threads"], c["baselines"]["threads"], c["finetune"]["threads"] = 2, 1, 3
    c["tables"] = {"table1": {"datasets": ["fashion-hard"], "models": ["convnet"],
                              "methods": ["random", "herding", "dm", "dit", "mgd3", "ours", "full"]}}
    methods.use(c)
    return c


def test_costs_sum_each_methods_own_jobs(cfg, tmp_path):
    r = tmp_path / "results" / "benchmarks"
    write_tsv(r / "select/fashion-hard/random.tsv", 1.5)
    write_tsv(r / "select/fashion-hard/herding.tsv", 2.0)
    for ipc, s in ((2, 0), (2, 1), (5, 0), (5, 1)):
        write_tsv(r / f"synthesize/fashion-hard/dm/ipc{ipc}/seed{s}.tsv", 10.0 + ipc + s)
    write_tsv(r / "sample/fashion-hard/dit/distill0.tsv", 4.0)
    write_tsv(r / "sample/fashion-hard/mgd3/ipc2/distill0.tsv", 5.0)
    write_tsv(r / "sample/fashion-hard/mgd3/ipc5/distill0.tsv", 6.0)
    write_tsv(r / "sample/fashion-hard/ours/distill0.tsv", 4.5)
    write_tsv(r / "finetune/fashion-hard/ours/distill0.tsv", 20.0)
    write_tsv(r / "features/fashion-hard.tsv", 7.0)
    write_tsv(r / "encode/fashion-hard.tsv", 3.0)
    write_tsv(r / "pretrain/vae.tsv", 30.0)
    write_tsv(r / "pretrain/dit.tsv", 40.0)
    write_tsv(r / "evaluate/ignored.tsv", 999.0)  # the protocol's cost: in no column

    c = costs(cfg, root=tmp_path)
    m = {k: v["fashion-hard"] for k, v in c["methods"].items()}
    core = {k: (v["jobs"], v["core_seconds"]) for k, v in m.items()}
    assert core["random"] == (1, 1.5) and core["herding"] == (1, 2.0)
    assert core["dm"] == (4, 12 + 13 + 15 + 16)  # 1 thread each
    assert core["dit"] == (1, 8.0) and m["dit"]["wall_seconds"] == 4.0  # 4 s x 2 sampling threads
    assert core["mgd3"] == (2, 22.0)  # one set per IPC
    assert core["ours"] == (2, 4.5 * 2 + 20.0 * 3)  # sampling + its own fine-tuning
    assert "full" not in c["methods"]
    assert c["shared"] == {"features/fashion-hard": 7.0, "encode/fashion-hard": 9.0, "pretrain_vae": 30.0,
                           "pretrain_dit": 40.0}
    md = render_cost(cfg, c)
    assert "| MGD³ | 22.0 (2 jobs) |" in md and "| Random | 1.5 (1 job) |" in md
    assert "the feature ConvNet (fashion-hard): 7.0" in md


def test_a_missing_record_is_named(cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="select/fashion-hard/random.tsv"):
        costs(cfg, root=tmp_path)


def test_a_fine_tuning_two_columns_sample_is_charged_once(cfg, tmp_path):
    cfg["tables"]["table1"]["methods"] = ["ours", "ours-guidance-2"]
    r = tmp_path / "results" / "benchmarks"
    for name in ("ours", "ours-guidance-2"):
        write_tsv(r / f"sample/fashion-hard/{name}/distill0.tsv", 5.0)
    write_tsv(r / "finetune/fashion-hard/ours/distill0.tsv", 20.0)
    write_tsv(r / "encode/fashion-hard.tsv", 3.0)
    for part in ("vae", "dit"):
        write_tsv(r / f"pretrain/{part}.tsv", 1.0)
    c = costs(cfg, root=tmp_path)
    assert c["methods"]["ours"]["fashion-hard"]["core_seconds"] == 5.0 * 2 + 20.0 * 3
    assert c["methods"]["ours-guidance-2"]["fashion-hard"]["core_seconds"] == 5.0 * 2
    assert c["borrowed"] == {"ours-guidance-2": "ours"}
    assert "| Ours, guidance 2 (+ Ours's fine-tuning) | 10.0 (1 job) |" in render_cost(cfg, c)
