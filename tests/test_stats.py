"""Paired statistics against values worked by hand, and the pairing guarantee of evaluation runs."""

import json
import math

import pytest
import torch

from divdistill.report.stats import pair_up, paired

# t quantiles from a printed t table (4 degrees of freedom): t(0.975) = 2.776, t(0.80) = 0.941
T975_4, T80_4 = 2.7764451, 0.9409646


def test_paired_statistics_match_a_hand_worked_example():
    """Differences d = a - b = [1, 2, 3, 4, 5]: mean 3; sd = sqrt(10 / 4) = 1.5811; se = sd / sqrt(5) =
    0.70711; 95% CI 3 -+ 2.7764 * 0.70711 = [1.0368, 4.9632]; t = 3 / 0.70711 = 4.2426 on 4 df, two-sided
    p = 0.01324; MDD = (2.7764 + 0.9410) * 0.70711 = 2.6286."""
    a = [11.0, 22.0, 33.0, 44.0, 55.0]
    b = [10.0, 20.0, 30.0, 40.0, 50.0]
    r = paired(a, b)
    assert r.n == 5 and r.mean == pytest.approx(3.0)
    assert r.sd == pytest.approx(math.sqrt(2.5))
    se = math.sqrt(2.5) / math.sqrt(5)
    assert r.ci_low == pytest.approx(3 - T975_4 * se, abs=1e-6) and r.ci_low == pytest.approx(1.0368, abs=1e-4)
    assert r.ci_high == pytest.approx(4.9632, abs=1e-4)
    assert r.p == pytest.approx(0.01324, abs=5e-5)
    assert r.mdd == pytest.approx((T975_4 + T80_4) * se, abs=1e-6) and r.mdd == pytest.approx(2.6286, abs=1e-4)
    assert r.significant
    # the bootstrap interval lies inside the data's range of differences and around the mean
    assert 1.0 <= r.boot_low < 3.0 < r.boot_high <= 5.0
    assert paired(a, b) == r  # seeded: the same interval every time


def test_undefined_statistics_are_none_never_nan():
    one = paired([3.0], [1.0])
    assert one.n == 1 and one.mean == 2.0 and one.ci_low is None and one.p is None and one.mdd is None
    flat = paired([3.0, 4.0, 5.0], [1.0, 2.0, 3.0])  # every difference 2: no spread
    assert flat.sd == 0 and flat.p is None and flat.mdd == 0 and flat.ci_low == flat.ci_high == 2.0
    assert not flat.significant
    with pytest.raises(ValueError, match="finite"):
        paired([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="equal"):
        paired([1.0, 2.0], [1.0])


def test_pairing_keys():
    a = {(0, 0): 10.0, (0, 1): 11.0, (1, 0): 12.0, (1, 1): 13.0}  # two distill seeds
    b = {(0, 0): 9.0, (0, 1): 9.5, (1, 0): 11.0, (1, 1): 12.0}
    keys, xa, xb, how = pair_up(a, b)
    assert keys == sorted(a) and xa == [10.0, 11.0, 12.0, 13.0] and how == "(distill_seed, seed)"
    random = {(0, 0): 5.0, (0, 1): 6.0}  # fine-tunes nothing: distill seed 0 only
    keys, xa, xb, how = pair_up(a, random)
    assert keys == [0, 1] and xa == [11.0, 12.0] and xb == [5.0, 6.0] and how.startswith("seed")


def test_one_seed_pairs_network_init_and_augmentation_across_methods(tmp_path, monkeypatch):
    """The pairing guarantee: two methods' evaluation jobs with the same seed (through the evaluate
    command, as the DAG runs them) start from the same network weights and draw the same batch orders
    and augmentations; only the distilled images differ. (Sampled sets share their noise too: it is a
    function of (seed, label, index) alone, sample.image_noise.)"""
    import divdistill.evaluate.trainer as trainer
    from divdistill import cli
    from divdistill.io import save_tensors, write_json
    from divdistill.tracking.store import init_tracking

    data = tmp_path / "data"
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("test", 4)):
        save_tensors(data / f"{split}.safetensors",
                     {"images": torch.randint(0, 256, (2 * n, 1, 8, 8), generator=g, dtype=torch.uint8),
                      "labels": torch.arange(2).repeat_interleave(n)})
    write_json(data / "meta.json", {"name": "toy", "class_names": ["a", "b"], "labels": [0, 1], "channels": 1,
                                    "resolution": 8})
    sets = {}
    for method in ("minimax", "ours"):
        sets[method] = tmp_path / f"{method}.safetensors"
        save_tensors(sets[method], {"images": torch.randint(0, 256, (6, 1, 8, 8), generator=g, dtype=torch.uint8),
                                    "labels": torch.tensor([0, 0, 0, 1, 1, 1])})
    tracking = {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "artifact_root": str(tmp_path / "art"),
                "experiment_prefix": "t"}
    init_tracking(tracking)
    seen = {}
    train_and_test, augment_batch = trainer.train_and_test, trainer.augment_batch

    def spy_train(net, *args, **kw):
        seen[current]["init"] = {k: v.clone() for k, v in net.state_dict().items()}
        return train_and_test(net, *args, **kw)

    def spy_augment(x, out_size, cfg, generator):
        seen[current]["draws"].append(generator.get_state().clone())  # the stream, before this batch's draws
        return augment_batch(x, out_size, cfg, generator)

    monkeypatch.setattr(trainer, "train_and_test", spy_train)
    monkeypatch.setattr(trainer, "augment_batch", spy_augment)
    hp = {"resolution": 8, "batch_size": 4, "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005,
          "milestones": [0.5], "gamma": 0.2, "eval_every": 2, "epochs": 2, "net": {"width": 4, "depth": 2},
          "augment": {"crop_scale": [0.5, 1.0], "flip": True, "color_jitter": 0.4, "lighting": 0.0, "cutmix_beta": 1.0}}
    for current in ("minimax", "ours"):
        seen[current] = {"draws": []}
        cell = {"dataset": "toy", "method": current, "ipc": "3", "model": "convnet", "distill_seed": 0}
        cli.main(["evaluate", "--data", str(data), "--distilled", str(sets[current]), "--cell", json_dumps(cell),
                  "--seeds", "7", "--params", json_dumps(hp), "--out", str(tmp_path / f"{current}.json"),
                  "--tracking", json_dumps(tracking)])
    a, b = seen["minimax"], seen["ours"]
    assert a["init"].keys() == b["init"].keys() and all(torch.equal(a["init"][k], b["init"][k]) for k in a["init"])
    assert len(a["draws"]) == len(b["draws"]) == 4  # 2 epochs x 2 batches
    assert all(torch.equal(x, y) for x, y in zip(a["draws"], b["draws"]))
    # and another seed draws otherwise (the spies see a real difference when there is one)
    seen["other"] = {"draws": []}
    current = "other"
    cell = {"dataset": "toy", "method": "ours", "ipc": "3", "model": "convnet", "distill_seed": 0}
    cli.main(["evaluate", "--data", str(data), "--distilled", str(sets["ours"]), "--cell", json_dumps(cell),
              "--seeds", "8", "--params", json_dumps(hp), "--out", str(tmp_path / "other.json"), "--tracking", json_dumps(tracking)])
    assert not all(torch.equal(x, y) for x, y in zip(seen["other"]["draws"], b["draws"]))
    assert not all(torch.equal(seen["other"]["init"][k], b["init"][k]) for k in b["init"])
    # one job for both seeds (evaluate.one_job_per: cell) gives each seed's result bit for bit
    current = "both"
    seen["both"] = {"draws": []}
    both = [tmp_path / "both7.json", tmp_path / "both8.json"]
    cli.main(["evaluate", "--data", str(data), "--distilled", str(sets["ours"]), str(sets["ours"]),
              "--cell", json_dumps(cell), "--seeds", "7", "8", "--params", json_dumps(hp),
              "--out", *map(str, both), "--tracking", json_dumps(tracking)])
    for one, alone in zip(both, (tmp_path / "ours.json", tmp_path / "other.json")):
        r1, r2 = json.loads(one.read_text()), json.loads(alone.read_text())
        assert r1["curve"] == r2["curve"] and r1["test_acc"] == r2["test_acc"] and r1["run_id"] != r2["run_id"]


def json_dumps(obj) -> str:
    import json

    return json.dumps(obj)
