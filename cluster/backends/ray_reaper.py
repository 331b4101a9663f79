"""`ray_reaper`: the Ray that fleetsim started dies with the process that started it.

`ray.init()` starts Ray's processes (gcs_server, raylet, monitors; the raylet starts agents and
workers) as children of the driver. When the driver is killed with SIGKILL, Ray 2.60's gcs and
raylet notice and exit within a second or two, but agents and workers still starting up live on
for a minute or more (they wait for a GCS that is gone). So `watch` starts one small process per
driver that follows the session: every `SCAN_S` it records the driver's children whose command
line names this Ray session and all their descendants, with their start times; when its pipe
from the driver reads end-of-file (the driver exited, however it died), it sends SIGKILL to each
recorded process still running under the same pid and start time (a pid reused since is left
alone). After a clean `ray.shutdown()`, `release` tells it to exit without reaping. Linux only (it reads /proc); elsewhere `watch` does nothing. Processes of other Ray
sessions on the machine are never touched: they are not in this driver's process tree.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

SCAN_S = 0.5

_WATCHING: dict = {}      # session name -> the reaper's Popen (one per session of this process)


def watch(ray) -> None:
    """Start the reaper for the Ray session this process just started; returns once it has
    recorded the session's processes running now."""
    if not os.path.isdir("/proc/self"):
        return
    session = ray._private.worker.global_worker.node.session_name
    if session in _WATCHING:
        return
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), str(os.getpid()), session],    # stdlib only: starts fast
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    proc.stdout.readline()          # its first scan is done: Ray's processes started so far are recorded
    proc.stdout.close()
    _WATCHING[session] = proc


def release() -> None:
    """Ray was shut down cleanly: stop watching (call after `ray.shutdown()`)."""
    for proc in _WATCHING.values():
        try:
            proc.stdin.write(b"x")
            proc.stdin.close()
        except OSError:
            pass
        proc.wait(timeout=5)
    _WATCHING.clear()


def _processes() -> dict[int, tuple[int, int]]:
    """{pid: (parent pid, start time in clock ticks)} of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            out[int(name)] = (int(fields[1]), int(fields[19]))
    return out


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def session_processes(driver: int, session: str, table: dict) -> dict[int, int]:
    """{pid: start time} of the driver's children naming `session` and all their descendants."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    key = session.encode()
    todo = [p for p in children.get(driver, []) if p != os.getpid() and key in _cmdline(p)]
    found = {}
    while todo:
        pid = todo.pop()
        if pid in table and pid not in found:
            found[pid] = table[pid][1]
            todo.extend(children.get(pid, []))
    return found


def _reap(recorded: dict[int, int]) -> None:
    alive = _processes()
    for pid, start in sorted(recorded.items()):
        if pid in alive and alive[pid][1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def main(argv: list[str]) -> int:
    driver, session = int(argv[0]), argv[1]
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # a Ctrl-C of the driver is the driver's business
    recorded = session_processes(driver, session, _processes())
    sys.stdout.write("scanned\n")
    sys.stdout.close()
    while True:
        readable, _, _ = select.select([sys.stdin.buffer], [], [], SCAN_S)
        if readable:
            if os.read(sys.stdin.fileno(), 1):
                return 0                               # `release`: the driver shut Ray down itself
            break                                      # end of file: the driver is gone
        table = _processes()
        recorded = {pid: start for pid, start in recorded.items() if table.get(pid, (0, None))[1] == start}
        recorded.update(session_processes(driver, session, table))
    _reap(recorded)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
