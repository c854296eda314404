import pytest
from mlflow.tracking import MlflowClient

from divdistill.tracking import experiment_name, init_tracking, start_run


@pytest.fixture
def cfg(tmp_path):
    return {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "artifact_root": str(tmp_path / "mlartifacts"),
            "experiment_prefix": "t"}


def test_runs_land_in_their_experiment_with_params_and_metrics(cfg):
    ids = init_tracking(cfg)
    assert init_tracking(cfg) == ids  # idempotent
    with start_run(cfg, "evaluate", "cell", {"a": 1, "nested": {"b": [1, 2]}}, tags={"method": "random"}) as run:
        for epoch in range(3):
            run.log_metrics({"train_loss": 1.0 / (epoch + 1)}, step=epoch)
    client = MlflowClient(cfg["tracking_uri"])
    r = client.get_run(run.run_id)
    assert r.info.experiment_id == ids[experiment_name("t", "evaluate")]
    assert r.info.status == "FINISHED"
    assert r.data.params == {"a": "1", "nested.b": "[1, 2]"}
    assert r.data.tags["method"] == "random" and r.data.tags["stage"] == "evaluate"
    history = client.get_metric_history(run.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]


def test_failing_job_ends_failed(cfg):
    init_tracking(cfg)
    with pytest.raises(RuntimeError):
        with start_run(cfg, "evaluate", "boom", {}) as run:
            raise RuntimeError("boom")
    assert MlflowClient(cfg["tracking_uri"]).get_run(run.run_id).info.status == "FAILED"


def test_uninitialised_database_is_a_clear_error(cfg):
    with pytest.raises(RuntimeError, match="does not exist"):
        with start_run(cfg, "evaluate", "x", {}):
            pass
