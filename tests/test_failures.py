"""Jobs fail loudly: a nan/inf loss stops training and the job's MLflow run ends FAILED."""

import json

import pytest
import torch
from mlflow.tracking import MlflowClient

from divdistill import cli
from divdistill.io import save_tensors, write_json
from divdistill.runtime.finite import require_finite
from divdistill.tracking.store import experiment_name, init_tracking


def test_require_finite():
    require_finite(torch.tensor(1.5), 3)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(FloatingPointError, match="at step 7"):
            require_finite(torch.tensor(bad), 7)


def _tiny_dataset(folder, n_per_class=4, classes=2, size=8):
    g = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        images = torch.randint(0, 256, (classes * n_per_class, 1, size, size), generator=g, dtype=torch.uint8)
        labels = torch.arange(classes).repeat_interleave(n_per_class)
        save_tensors(folder / f"{split}.safetensors", {"images": images, "labels": labels})
    write_json(folder / "meta.json", {"name": "tiny", "class_names": ["a", "b"][:classes], "labels": [0, 1],
                                      "channels": 1, "resolution": size})


def test_nan_loss_fails_the_evaluation_job_and_its_run(tmp_path, one_thread):
    """An absurd learning rate drives the loss to inf/nan: the job raises, writes no result, and its
    MLflow run ends FAILED instead of finishing with a meaningless accuracy."""
    tracking = {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "artifact_root": str(tmp_path / "art"),
                "experiment_prefix": "t"}
    init_tracking(tracking)
    _tiny_dataset(tmp_path / "data")
    cell = {"dataset": "tiny", "method": "full", "ipc": "all", "model": "convnet", "distill_seed": 0}
    hp = {"resolution": 8, "batch_size": 4, "lr": 1e30, "momentum": 0.9, "weight_decay": 0.0,
          "milestones": [0.5], "gamma": 0.2, "eval_every": 0, "epochs": 3, "net": {"width": 4, "depth": 1},
          "augment": {"crop_scale": [0.5, 1.0], "flip": True, "color_jitter": 0.0, "lighting": 0.0,
                      "cutmix_beta": 0.0}}
    out = tmp_path / "result.json"
    with pytest.raises(FloatingPointError):
        cli.main(["evaluate", "--data", str(tmp_path / "data"), "--cell", json.dumps(cell), "--seeds", "0",
                  "--params", json.dumps(hp), "--out", str(out), "--tracking", json.dumps(tracking), "--device", "cpu"])
    assert not out.exists()
    client = MlflowClient(tracking["tracking_uri"])
    exp = client.get_experiment_by_name(experiment_name("t", "evaluate"))
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
