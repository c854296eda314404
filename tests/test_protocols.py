"""The evaluation protocols (evaluate/protocols.py, the trainer's soft labels) and DD-Ranking's robust
scores (report/robust.py), against hand-computed values and the protocols' own invariants."""

import math

import pytest
import torch
import torch.nn as nn

from divdistill.data.augment import AugmentConfig, test_transform
from divdistill.evaluate import protocols
from divdistill.evaluate.trainer import TrainConfig, kd_loss, lr_factor, seed_everything, train_and_test
from divdistill.experiment import grid
from divdistill.report import robust

from .conftest import ROOT, planned_jobs, run

# ----------------------------------------------------------------------------- the KD loss


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_kd_loss_equals_a_hand_computed_kl_on_two_classes(T):
    """Student logits (1, 0), teacher (0, 1). At temperature T the teacher's q = (1 - s, s) with
    s = e^(1/T) / (1 + e^(1/T)) and the student's p = (s, 1 - s), so
    KL(q || p) = (1 - s) ln((1 - s) / s) + s ln(s / (1 - s)) = (2s - 1) / T = tanh(1 / 2T) / T,
    and times T^2: T tanh(1 / 2T) (0.46212 at T = 1, 0.49741 at T = 4)."""
    # two identical rows: batchmean is the row's value; float64, so the check is to 1e-7
    student = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    teacher = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    expected = {1.0: 0.46211716, 4.0: 0.49741201}[T]
    assert abs(T * math.tanh(1 / (2 * T)) - expected) < 1e-7  # the closed form, checked once
    assert abs(kd_loss(student, teacher, T).item() - expected) < 1e-7
    assert kd_loss(teacher, teacher, T).item() == pytest.approx(0.0, abs=1e-7)  # same logits: no loss


def test_quarter_cosine_goes_from_one_to_a_half():
    """0.5 (1 + cos(pi e / 2E)): 1 at epoch 0, 1/2 + sqrt(2)/4 halfway, 1/2 after the last epoch."""
    assert lr_factor(0, 300) == 1.0
    assert lr_factor(150, 300) == pytest.approx(0.5 + math.sqrt(2) / 4)
    assert lr_factor(300, 300) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- the teacher's batches


class Recorder(nn.Module):
    """A tiny network that keeps every batch it is given."""

    def __init__(self, classes=3, channels=1, side=8):
        super().__init__()
        self.fc = nn.Linear(channels * side * side, classes)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.fc(x.flatten(1))


def _tiny_data(n=24, classes=3, side=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, side, side), dtype=torch.uint8, generator=g)
    return x, torch.arange(n) % classes


@pytest.mark.parametrize("protocol", ["soft", "soft-noaug"])
def test_the_teacher_sees_exactly_the_batches_the_student_trains_on(protocol):
    """Mode "M": the teacher relabels the augmented, CutMix-ed batch itself (not the raw images, not a
    second augmentation draw); without augmentation both see the test transform of the images."""
    x, y = _tiny_data()
    hp = protocols.resolve({"resolution": 8, "batch_size": 8, "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0,
                            "milestones": [0.5], "gamma": 0.2, "eval_every": 0,
                            "augment": {"cutmix_beta": 1.0, "mean": [0.5], "std": [0.5]},
                            "soft": {"temperature": 4.0, "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.01,
                                     "schedule": "quarter_cosine"}}, protocol, epochs=2)
    cfg = TrainConfig(**{k: v for k, v in hp.items() if k != "augment"}, augment=AugmentConfig(**hp["augment"]))
    teacher, student = Recorder(), Recorder()
    train_and_test(student, x, y, x[:6], y[:6], cfg, seed=0, teacher=teacher, progress=False)
    student_batches = student.seen[:len(teacher.seen)]  # the student also sees the final test pass
    assert len(teacher.seen) == 6 and all(torch.equal(a, b) for a, b in zip(teacher.seen, student_batches))
    first = test_transform(x, 8, cfg.augment)
    if protocol == "soft":  # augmented: no batch is the plain test transform of its images
        assert not any(torch.equal(b, first[:len(b)]) for b in teacher.seen)
    else:
        assert all(any(torch.equal(b[i], first[j]) for j in range(len(x))) for b in teacher.seen for i in range(len(b)))


def test_soft_labels_need_a_teacher_and_hard_labels_refuse_one():
    x, y = _tiny_data()
    with pytest.raises(ValueError, match="teacher"):
        train_and_test(Recorder(), x, y, x, y, TrainConfig(epochs=1, resolution=8, labels="soft"), 0, progress=False)
    with pytest.raises(ValueError, match="teacher"):
        train_and_test(Recorder(), x, y, x, y, TrainConfig(epochs=1, resolution=8), 0, progress=False,
                       teacher=Recorder())


def test_shuffled_test_labels_change_nothing_the_protocols_learn():
    """Nothing reads the test set before the final score: a teacher and a soft student trained with the
    test labels shuffled end with the same weights and training curve; only the test accuracy moves."""
    x, y = _tiny_data(seed=1)
    tx, ty = _tiny_data(n=30, seed=2)
    shuffled = ty[torch.randperm(len(ty), generator=torch.Generator().manual_seed(0))]
    assert not torch.equal(shuffled, ty)
    aug = AugmentConfig(cutmix_beta=1.0)

    def both(test_y):
        seed_everything(0)
        teacher = Recorder()
        t = train_and_test(teacher, x, y, tx, test_y, TrainConfig(epochs=3, resolution=8, eval_every=1,
                                                                   augment=aug), 0, progress=False)
        seed_everything(1)
        student = Recorder()
        s = train_and_test(student, x[:9], y[:9], tx, test_y,
                           TrainConfig(epochs=3, resolution=8, eval_every=1, augment=aug, labels="soft",
                                       optimizer="adamw", lr=0.001, schedule="quarter_cosine", temperature=4.0),
                           1, teacher=teacher, progress=False)
        return teacher.fc.weight.clone(), student.fc.weight.clone(), t, s

    a, b = both(ty), both(shuffled)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for ra, rb in ((a[2], b[2]), (a[3], b[3])):
        assert [r["train_loss"] for r in ra["curve"]] == [r["train_loss"] for r in rb["curve"]]


# ----------------------------------------------------------------------------- the robust scores


def test_lrs_and_ars_equal_hand_computed_values():
    """alpha = 0.5 IOR - 0.5 HLR with HLR = 0.8 - 0.4 and IOR = 0.6 - 0.5: alpha = -0.15,
    LRS = (e^-0.15 - e^-1) / (e - e^-1) = (0.860708 - 0.367879) / 2.350402 = 0.209679."""
    assert robust.lrs(0.8, 0.4, 0.6, 0.5) == pytest.approx(0.209679, abs=1e-6)
    # beta = 0.5 (0.55 - 0.50) + 0.5 (0.40 - 0.45) = 0: ARS = (1 - e^-1) / (e - e^-1) = 0.268941
    assert robust.ars(0.55, 0.50, 0.40, 0.45) == pytest.approx(0.268941, abs=1e-6)
    assert robust.lrs(1.0, 0.0, 0.0, 1.0) == pytest.approx(0.0) and robust.lrs(0.0, 1.0, 1.0, 0.0) == pytest.approx(1.0)


def test_the_percent_trap_is_refused():
    """DD-Ranking feeds percent into exp: HLR = 40 points, IOR = 10 gives alpha = -15 and
    LRS = (e^-15 - e^-1) / (e - e^-1) = -0.157, outside [0, 1]. Ours takes fractions and refuses percent."""
    reference = (math.exp(0.5 * 10 - 0.5 * 40) - math.exp(-1)) / (math.e - math.exp(-1))
    assert reference == pytest.approx(-0.1565, abs=1e-4)
    with pytest.raises(ValueError, match="fractions"):
        robust.lrs(80.0, 40.0, 60.0, 50.0)
    assert robust.lrs(0.80, 0.40, 0.60, 0.50) == pytest.approx(0.209679, abs=1e-6)  # the same run, as fractions
    with pytest.raises(ValueError):
        robust.squash(float("nan"))


def test_scores_stay_in_the_unit_interval_over_every_accuracy():
    grid_ = [i / 10 for i in range(11)]
    values = [robust.lrs(a, b, c, d) for a in grid_ for b in grid_ for c in grid_ for d in grid_]
    values += [robust.ars(a, b, c, d) for a in grid_ for b in grid_ for c in grid_ for d in grid_]
    assert min(values) >= 0.0 and max(values) <= 1.0
    assert min(values) == pytest.approx(0.0) and max(values) == pytest.approx(1.0)


def _agg(values: dict) -> dict:
    """{(method, ipc, protocol): [percent per seed]} -> aggregate-shaped cells of dataset d, ConvNet."""
    return {("d", m, ipc, "convnet", p): {"seeds": [(0, s) for s in range(len(v))], "values": v}
            for (m, ipc, p), v in values.items()}


def test_scores_pair_seeds_and_use_fulls_mean():
    """Per seed, from the table's cells: Full's hard accuracy is the mean over its seeds (80 here)."""
    cfg = {"seeds": [0, 1], "ipc": [10], "evaluate": {"protocols": ["hard", "soft", "soft-noaug"]},
           "tables": {"table1": {"datasets": ["d"], "methods": ["random", "ours", "full"], "models": ["convnet"]}}}
    agg = _agg({("full", None, "hard"): [78.0, 82.0], ("ours", 10, "hard"): [40.0, 50.0],
                ("ours", 10, "soft"): [60.0, 62.0], ("random", 10, "soft"): [50.0, 55.0],
                ("random", 10, "hard"): [45.0, 45.0], ("ours", 10, "soft-noaug"): [30.0, 35.0],
                ("random", 10, "soft-noaug"): [32.0, 30.0]})
    assert robust.scores_of(cfg, "table1") == ["lrs", "ars-soft"]
    found = {(r["score"], r["method"]): r for r in robust.scores(cfg, agg)}
    assert found[("lrs", "ours")]["values"] == pytest.approx([robust.lrs(0.8, 0.4, 0.6, 0.5),
                                                              robust.lrs(0.8, 0.5, 0.62, 0.55)])
    assert found[("lrs", "random")]["values"] == pytest.approx([robust.lrs(0.8, 0.45, 0.5, 0.5),
                                                                robust.lrs(0.8, 0.45, 0.55, 0.55)])
    assert found[("ars-soft", "ours")]["values"] == pytest.approx([robust.ars(0.6, 0.5, 0.30, 0.32),
                                                                   robust.ars(0.62, 0.55, 0.35, 0.30)])
    assert ("ars-soft", "random") not in found and ("lrs", "full") not in found
    diff = next(r for r in robust.differences(cfg, list(found.values())) if r["score"] == "lrs")
    assert (diff["a"], diff["b"], diff["n"]) == ("ours", "random", 2)
    ours, rdm = found[("lrs", "ours")]["values"], found[("lrs", "random")]["values"]
    assert diff["mean"] == pytest.approx(sum(o - r for o, r in zip(ours, rdm)) / 2)
    page = robust.render(list(found.values()), [diff], "md")
    assert "| table1 | d | 10 | ConvNet | LRS | Ours | 2 |" in page and "Ours − Random" in page


# ----------------------------------------------------------------------------- the grid


def test_the_demo_trains_one_teacher_however_many_cells_read_it(project):
    """params.yaml runs Table 1 under hard and soft: one teacher for fashion-hard / ConvNet, read by
    every soft evaluation of every method (all seeds of a cell in one job)."""
    from divdistill.experiment.config import load

    cfg = load(ROOT / "params.yaml")
    soft = [c for c in grid.cells(cfg) if c.protocol == "soft"]
    assert grid.teachers(cfg) == [("fashion-hard", "convnet")] and len(soft) == 9 * 6
    assert not any(c.method == "full" for c in soft)  # Full runs under the hard protocol only
    jobs = planned_jobs(run(["snakemake", "-n", "all"], project, timeout=300).stdout)
    assert jobs["teacher"] == 1
    assert jobs["evaluate"] == len({(c.dataset, c.method, c.ipc, c.model, c.protocol, c.distill_seed)
                                    for c in grid.cells(cfg) if c.method != "full"})


def test_the_teachers_accuracy_is_in_the_notes_and_latex_escapes_its_percent():
    from divdistill.report.aggregate import aggregate
    from divdistill.report.tables import render_latex, render_markdown

    cfg = {"seeds": [0], "ipc": [10], "evaluate": {"protocols": ["hard", "soft"]},
           "tables": {"table1": {"datasets": ["d"], "methods": ["random"], "models": ["convnet"]}}}
    results = [{"cell": {"dataset": "d", "method": "random", "ipc": "10", "model": "convnet", "distill_seed": 0,
                         "seed": 0, "protocol": p}, "test_acc": a, "best_test_acc": a, "run_id": p, "curve": []}
               for p, a in (("hard", 0.5), ("soft", 0.6))]
    teachers = {("d", "convnet"): {"test_acc": 0.771}}
    md = render_markdown(cfg, "table1", aggregate(results), teachers)
    assert "| hard | d | 10 | ConvNet | 50.0 ± 0.0 |" in md and "| soft | d | 10 | ConvNet | 60.0 ± 0.0 |" in md
    assert "Teachers' test accuracy: d / ConvNet 77.1%." in md
    tex = render_latex(cfg, "table1", aggregate(results), teachers)
    assert "d / ConvNet 77.1\\%." in tex and "77.1%" not in tex
