"""The job server (jobserver.py): a job run by a fork of the server behaves as the same command in a
process of its own: output, exit code, working directory, environment, umask, signals both ways.
(Its results equal a process's bit for bit: test_slurm compares a local run, which uses the server,
with a Slurm run, which does not; test_faults kills jobs run by it.)"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from divdistill.runtime import jobserver

from .conftest import ROOT, project_env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A started server; its socket is handed to each command explicitly (this process's environment,
    which other tests' subprocesses inherit, stays without it)."""
    log = tmp_path_factory.mktemp("jobserver") / "server.log"
    s = jobserver.start(str(log))
    path = os.environ.pop(jobserver.ENV)
    yield path, log
    s.stop()
    assert not Path(path).exists() and not Path(s.dir).exists()


def divdistill(args, cwd, socket_path=None, env=None, **kw) -> subprocess.Popen:
    e = project_env()
    e.pop(jobserver.ENV, None)
    e.pop("DIVDISTILL_TRACKING", None)
    if socket_path is not None:
        e[jobserver.ENV] = socket_path
    e.update(env or {})
    return subprocess.Popen(["divdistill", *args], cwd=cwd, env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def finish(p: subprocess.Popen) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err


def served(log: Path, command: str) -> list[int]:
    """pids of the children the server forked for ``command`` (its log: 'job PID: divdistill CMD in DIR')."""
    return [int(line.split()[1].rstrip(":")) for line in log.read_text().splitlines()
            if line.startswith("job ") and line.split()[3] == command]


def wait_for(cond, timeout=60):
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_a_job_through_the_server_prints_and_exits_as_its_own_process_does(server, tmp_path):
    path, log = server
    (tmp_path / "bad.yaml").write_text("seeds: [0\n")
    for args in (["check", "--config", str(ROOT / "params.yaml")],  # succeeds (or names a missing input)
                 ["check", "--config", "missing.yaml"],  # an exception: exit 1, its message last
                 ["check", "--config", "bad.yaml"],
                 ["no-such-command"]):  # argparse: usage on stderr, exit 2
        before = len(served(log, args[0]))
        via = finish(divdistill(args, tmp_path, path))
        assert len(wait_for(lambda: served(log, args[0]))) == before + 1, "the server did not run it"
        alone = finish(divdistill(args, tmp_path))
        assert via[0] == alone[0] and via[1] == alone[1], (args, via, alone)
        assert via[2].strip().splitlines()[-1:] == alone[2].strip().splitlines()[-1:], (args, via[2], alone[2])
    assert finish(divdistill(["no-such-command"], tmp_path, path))[0] == 2


def test_the_child_has_the_clients_directory_environment_and_umask(server, tmp_path):
    path, log = server
    # the environment: $DIVDISTILL_TRACKING read when the job runs, not when the server imported
    rc, _, err = finish(divdistill(["parents", "--spec", '{"tables": {}}', "--out", "x.json"], tmp_path, path))
    assert rc == 1 and "missing --tracking" in err
    rc, _, err = finish(divdistill(["parents", "--spec", '{"tables": {}}', "--out", "x.json"], tmp_path, path,
                                   env={"DIVDISTILL_TRACKING": "not json"}))
    assert rc == 1 and "invalid JSON argument" in err and "not json" in err
    # the directory and the umask: a relative sqlite:///mlflow.db lands in the client's folder, 0600 under 077
    modes = {}
    for where, sock in (("served", path), ("alone", None)):
        folder = tmp_path / where
        folder.mkdir()
        (folder / "cfg.yaml").write_text("mlflow: {tracking_uri: 'sqlite:///mlflow.db', artifact_root: mlartifacts, "
                                         "experiment_prefix: t}\n")
        rc, out, err = finish(divdistill(["init-tracking", "--config", "cfg.yaml"], folder, sock, umask=0o077))
        assert rc == 0, err
        assert "t-evaluate" in out
        modes[where] = (folder / "mlflow.db").stat().st_mode & 0o777
    assert modes["served"] == modes["alone"] == 0o600


def test_signals_reach_the_job_and_a_killed_client_takes_its_job_along(server, tmp_path):
    path, log = server
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # `check --config fifo` blocks opening it: a job that runs until stopped

    def blocked_job():
        before = set(served(log, "check"))
        client = divdistill(["check", "--config", str(fifo)], tmp_path, path)
        child = wait_for(lambda: set(served(log, "check")) - before).pop()
        time.sleep(0.3)  # in its open() by now
        assert client.poll() is None and Path(f"/proc/{child}").exists()
        return client, child

    # SIGTERM to the client reaches the job, which exits 143 (cli.main's handler: MLflow runs end FAILED)
    client, child = blocked_job()
    client.send_signal(signal.SIGTERM)
    assert finish(client)[0] == 143
    # the job killed outright: the client dies of the same signal, as the job's own process would have
    client, child = blocked_job()
    os.kill(child, signal.SIGKILL)
    assert finish(client)[0] == -signal.SIGKILL
    # the client killed outright (its connection closes): the server kills the job too
    client, child = blocked_job()
    client.kill()
    client.wait()
    wait_for(lambda: not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2])


def test_without_a_server_the_client_runs_the_job_itself(server, tmp_path):
    path, log = server
    rc, _, err = finish(divdistill(["init-tracking", "--config", "cfg.yaml"], tmp_path, str(tmp_path / "gone.sock")))
    assert rc == 1 and "cfg.yaml does not exist" in err
    before = len(served(log, "init-tracking"))
    rc, _, err = finish(divdistill(["init-tracking", "--config", "cfg.yaml"], tmp_path, path,
                                   env={jobserver.OFF: "1"}))  # the user's switch: a process of its own
    assert rc == 1 and "cfg.yaml does not exist" in err
    assert len(served(log, "init-tracking")) == before
