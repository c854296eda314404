"""The job server's client side and wire format (the server: jobserver.py): a ``divdistill`` process
started while ``$DIVDISTILL_JOB_SERVER`` names a server's socket sends its job there and exits like the
job did. Imports nothing heavy (~50 ms): every job's console script runs this first.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import time

ENV = "DIVDISTILL_JOB_SERVER"  # the socket's path, set for the jobs by the Snakefile's onstart
OFF = "DIVDISTILL_NO_JOB_SERVER"  # set (non-empty) by a user: no server, every job a process
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


# ----------------------------------------------------------------------------- wire format
# request: 4-byte length + JSON {argv, cwd, env, umask}, the client's fds 0, 1, 2 attached (SCM_RIGHTS);
# replies: one JSON line each, {"pid": N} after the fork, {"status": S} (os.waitpid's) at the end.


def send_request(sock: socket.socket, argv: list[str]) -> None:
    umask = os.umask(0)
    os.umask(umask)
    body = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask}).encode()
    msg = struct.pack("!I", len(body)) + body
    sent = socket.send_fds(sock, [msg], [0, 1, 2])
    sock.sendall(msg[sent:])


def recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    while len(data) < 4 or len(data) < 4 + struct.unpack("!I", data[:4])[0]:
        more = conn.recv(1 << 16)
        if not more:
            raise ConnectionError("request cut short")
        data += more
    return json.loads(data[4:4 + struct.unpack("!I", data[:4])[0]]), fds


def reply(conn: socket.socket, **msg) -> None:
    conn.sendall(json.dumps(msg).encode() + b"\n")


# ----------------------------------------------------------------------------- client


def forward(argv: list[str]) -> int | None:
    """Run ``divdistill argv`` in the server named by $DIVDISTILL_JOB_SERVER; the child's wait status,
    or None when there is no server to run it (the caller runs the job itself)."""
    path = os.environ.get(ENV)
    if not path or os.environ.get(OFF) or argv[:1] == ["serve"]:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        send_request(sock, argv)
    except OSError:
        sock.close()
        return None
    replies = sock.makefile("rb")
    child, pending = None, []

    def relay(signum, _frame):
        if child is None:
            pending.append(signum)
        else:
            os.kill(child, signum)

    before = {sig: signal.signal(sig, relay) for sig in FORWARDED}
    line = replies.readline()
    if not line:  # the server went away before forking: nothing ran; the caller runs the job
        for sig, handler in before.items():
            signal.signal(sig, handler)
        for signum in pending:
            os.kill(os.getpid(), signum)
        return None
    child = json.loads(line)["pid"]
    for signum in pending:
        os.kill(child, signum)
    line = replies.readline()
    if not line:
        print(f"divdistill: the job server ({path}) went away while job {child} ran", file=sys.stderr)
        return 1 << 8
    return json.loads(line)["status"]


def exit_like(status: int):
    """Leave this process the way the child left: its exit code, or the signal that ended it."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig != signal.SIGKILL:  # SIGKILL has no handler to reset
            signal.signal(sig, signal.SIG_DFL)
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), sig)
        raise SystemExit(128 + sig)  # not reached: the signal ends this process
    raise SystemExit(os.waitstatus_to_exitcode(status))
