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
    assert m["random"] == {"jobs": 1, "core_seconds": 1.5}
    assert m["herding"] == {"jobs": 1, "core_seconds": 2.0}
    assert m["dm"] == {"jobs": 4, "core_seconds": 12 + 13 + 15 + 16}  # 1 thread each
    assert m["dit"] == {"jobs": 1, "core_seconds": 8.0}  # 4 s x 2 sampling threads
    assert m["mgd3"] == {"jobs": 2, "core_seconds": 22.0}  # one set per IPC
    assert m["ours"] == {"jobs": 2, "core_seconds": 4.5 * 2 + 20.0 * 3}  # sampling + its own fine-tuning
    assert "full" not in c["methods"]
    assert c["shared"] == {"features/fashion-hard": 7.0, "encode/fashion-hard": 9.0, "pretrain_vae": 30.0,
                           "pretrain_dit": 40.0}
    md = render_cost(cfg, c)
    assert "| MGD³ | 22.0 (2 jobs) |" in md and "| Random | 1.5 (1 job) |" in md
    assert "the feature ConvNet (fashion-hard): 7.0" in md


def test_a_missing_record_is_named(cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="select/fashion-hard/random.tsv"):
        costs(cfg, root=tmp_path)
