"""Processes of a test or the lab: stopped by their own PID, waited for by polling, told apart from a
later process with the same PID (``start_time``).  Shared by ccg_lab/graphite.py, ccg_lab/demo.py,
tests/support/collectd_harness.py and tests/bench/lab.py."""

import os
import signal
import subprocess
import time


def terminate(proc, timeout):
    """SIGTERM to this process's PID, SIGKILL after ``timeout`` seconds; reap it; its exit status."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return proc.wait(timeout=10)


def read_text(path):
    """A file's text ('' if it is not there yet)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_until(predicate, timeout=20.0, pause=0.2, what="condition", error=AssertionError,
               retry_on=(OSError, ValueError)):
    """Poll ``predicate`` until it returns something true (returned), at most ``timeout`` seconds; then
    ``error``.  Exceptions of ``retry_on`` count as "not yet" (the last one is named in the error)."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except retry_on as e:
            last_error = e
        if time.monotonic() >= deadline:
            raise error("timed out after %ss waiting for %s%s"
                        % (timeout, what, "; last error: %r" % (last_error,) if last_error else ""))
        time.sleep(pause)


def start_time(pid):
    """When ``pid`` started (field 22 of /proc/<pid>/stat, as text), None if there is no such process: with
    the PID, it names a process that cannot be confused with a later one of the same PID."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None
