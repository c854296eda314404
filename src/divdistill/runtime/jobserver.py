"""A job server: one process imports torch, diffusers, MLflow and divdistill once, and forks a child
per job, so a local workflow's jobs skip the ~5 s of imports each process would otherwise pay.

    snakemake --cores 2 all               # the Snakefile's onstart starts it, onsuccess/onerror stop it
    DIVDISTILL_NO_JOB_SERVER=1 snakemake --cores 2 all   # every job a process of its own

A job is still the shell line Snakemake runs (``divdistill <command> ...``). When
``$DIVDISTILL_JOB_SERVER`` names the server's socket, that ``divdistill`` process (the client: no
torch, ~50 ms) sends its arguments, working directory, environment, umask and its stdin, stdout and
stderr (the file descriptors themselves) to the server, which forks; the child becomes the job (the
same ``cli.run`` a plain process calls, writing to the client's descriptors) and the client waits:

    client                        server                          child (fork)
    connect, send request  -->    accept, fork           -->      chdir, environ, dup2 fds, run job
    wait; forward signals  <--    {"pid": N}
    exit like the child    <--    {"status": wait status}  <--   exits (reaped by the server)

so Snakemake sees the job's exit code (or its signal), its log file gets the job's stderr, and
SIGTERM/SIGINT to the client reach the child (cli.main turns SIGTERM into a FAILED MLflow run). A
client killed outright (SIGKILL) closes its connection: the server kills the child the same way,
so a killed job stays killed, as it would without the server. Without a server (not started, not
running, or gone before the fork) the client runs the job itself. Results are the same bit for bit:
the child starts from a fresh process's state (torch's default generator untouched, jobs seed
everything explicitly; Python's and NumPy's global generators reseeded from the OS).

Only local execution on a machine without a GPU uses it (Slurm's jobs run elsewhere; CUDA does not
survive a fork). Snakemake's ``benchmark:`` files then time the job (``s``) but count the client's
CPU and memory only.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable

from .jobclient import ENV, FORWARDED, OFF, recv_request, reply


# ----------------------------------------------------------------------------- server


def preload() -> None:
    """Import what jobs import: every divdistill module (torch, diffusers, scipy, matplotlib come
    along) and MLflow's client and SQL store. Nothing is computed: no thread pool exists to fork."""
    import importlib
    import pkgutil

    import divdistill

    from ..tracking.store import preload as preload_mlflow

    for mod in pkgutil.walk_packages(divdistill.__path__, "divdistill."):
        if mod.name != "divdistill.__main__":
            importlib.import_module(mod.name)
    preload_mlflow()


def _child(request: dict, fds: list[int], inherited: list, main: Callable[[list[str]], None]) -> int:
    """In the forked child: become the job (the client's fds, directory, environment), run it through
    ``main`` (cli.main, handed down by the serve command), and return its exit code."""
    import random

    for s in inherited:  # the listening socket and other jobs' connections are not this job's
        s.close()
    for sig in (signal.SIGTERM, signal.SIGCHLD, *FORWARDED):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    # fresh text streams on the new descriptors (line-buffered where a terminal, as Python does)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["divdistill", *request["argv"]]
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    try:
        main(request["argv"])  # a call, not a process: the SIGTERM handler, no collector tricks
        return 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # as Python does: die of SIGINT
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1


def serve(path: str, main: Callable[[list[str]], None]) -> None:
    """Listen on ``path`` (clients queue while the imports run), then fork a child per request, which runs
    ``main(argv)`` (cli.main), until SIGTERM or until the process that started the server is gone;
    running jobs are waited for."""
    import atexit
    import gc
    import selectors

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)
    gc.disable()
    t0 = time.monotonic()
    preload()
    gc.freeze()  # children inherit the imports frozen: no collection walks them again
    gc.enable()
    print(f"job server {os.getpid()}: imports done in {time.monotonic() - t0:.1f} s; listening on {path}", flush=True)
    started_by = os.getppid()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    jobs: dict[int, socket.socket] = {}  # child pid -> its client's connection
    while True:
        if (stop or os.getppid() != started_by) and listener.fileno() != -1:
            sel.unregister(listener)
            listener.close()
            if os.path.exists(path):
                os.unlink(path)
        if listener.fileno() == -1 and not jobs:
            break
        for key, _ in sel.select(timeout=0.2):
            if key.fileobj is listener:
                conn, _ = listener.accept()
                try:
                    conn.settimeout(10)
                    request, fds = recv_request(conn)
                    conn.settimeout(None)
                except (OSError, ValueError) as e:
                    print(f"job server: bad request: {e}", flush=True)
                    conn.close()
                    continue
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        sel.close()
                        code = _child(request, fds, [listener, conn, *jobs.values()], main)
                    finally:
                        try:
                            atexit._run_exitfuncs()
                            sys.stdout.flush()
                            sys.stderr.flush()
                        finally:
                            os._exit(code)
                for fd in fds:
                    os.close(fd)
                jobs[pid] = conn
                try:
                    reply(conn, pid=pid)
                except OSError:  # its client is gone already: so is the job (reaped below)
                    os.kill(pid, signal.SIGKILL)
                    continue
                sel.register(conn, selectors.EVENT_READ, pid)
                print(f"job {pid}: divdistill {' '.join(request['argv'][:1])} in {request['cwd']}", flush=True)
            else:  # a client spoke or hung up before its job ended: it was killed; so is the job
                os.kill(key.data, signal.SIGKILL)
                sel.unregister(key.fileobj)
        _reap(jobs, sel)


def _reap(jobs: dict, sel) -> None:
    """Every finished child: its wait status to its client (gone clients are skipped), the connection closed."""
    while jobs:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        conn = jobs.pop(pid)
        try:
            reply(conn, status=status)
        except OSError:
            pass
        if conn in (k.fileobj for k in sel.get_map().values()):
            sel.unregister(conn)
        conn.close()


# ----------------------------------------------------------------------------- start and stop (the Snakefile)


class Server:
    """The server of one workflow run: ``start`` sets $DIVDISTILL_JOB_SERVER for the jobs, ``stop``
    ends it. Its own output goes to ``log``."""

    def __init__(self, log: str):
        import subprocess
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="divdistill-")  # 0700: only this user reaches the socket
        self.path = os.path.join(self.dir, "jobs.sock")
        env = {k: v for k, v in os.environ.items() if k != ENV}
        os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "divdistill", "serve", "--socket", self.path],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        for _ in range(100):  # the socket exists within milliseconds (before the imports)
            if os.path.exists(self.path) or self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if os.path.exists(self.path):
            os.environ[ENV] = self.path

    def stop(self) -> None:
        import shutil
        import subprocess

        if os.environ.get(ENV) == self.path:
            del os.environ[ENV]
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start(log: str) -> Server | None:
    """Start a server for this process's jobs, unless $DIVDISTILL_NO_JOB_SERVER is set or the machine
    has a GPU (an NVIDIA or AMD device node; asked without importing torch): CUDA does not survive a
    fork, and GPU jobs hardly notice a few seconds of imports."""
    import glob

    if os.environ.get(OFF) or glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd"):
        return None
    return Server(log)
