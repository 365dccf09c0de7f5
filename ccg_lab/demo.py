"""Demo containers for a host without any: ``python -m ccg_lab.demo`` (``make demo``).

Creates synthetic containers (cgroups with real processes in them, see :mod:`ccg_lab.synthetic`)
under ``/<prefix>/`` in every cgroup hierarchy, while collectd runs the plugin in another terminal:

- ``web``:   about 20 % of one core, continuously; 64 MiB; 3 child processes
- ``db``:    about 5 % of one core; 200 MiB; 1 child process
- ``batch``: a short job (2 s of CPU, 32 MiB) in a new cgroup every 15 s: the cgroup appears, the job
  runs and exits, the cgroup is removed 10 s after it appeared, and a new one comes 5 s later

With the demo configuration (``^/collectd-cgroups-demo/(?P<name>[^/]+)$``) they show up as
``cgroup-web``, ``cgroup-db`` and ``cgroup-batch``.  Runs for ``--seconds`` (default 300) or until Ctrl-C or
SIGTERM, and always kills its processes and removes its cgroups on the way out.  Needs root.
"""

import argparse
import os
import signal
import sys
import time

DEFAULT_PREFIX = "collectd-cgroups-demo"
BATCH_EVERY = 15.0          # a new batch cgroup every this many seconds
BATCH_KEEP = 10.0           # ... removed this many seconds after it appeared
BATCH_JOB = dict(cpu_seconds=2.0, memory_mib=32, children=0, exit_after=1.0)
STEADY = (
    ("web", dict(duty=0.20, memory_mib=64, children=3)),
    ("db", dict(duty=0.05, memory_mib=200, children=1)),
)
TICK = 0.2


class _Stop(Exception):
    pass


def _parse(argv):
    ap = argparse.ArgumentParser(
        prog="python -m ccg_lab.demo",
        description="Create demo containers (cgroups with real processes) for collectd-cgroups to report, "
                    "and remove them again on exit.")
    ap.add_argument("--seconds", type=float, default=300.0,
                    help="how long to run (default: %(default)s); Ctrl-C or SIGTERM stop earlier")
    ap.add_argument("--prefix", default=DEFAULT_PREFIX,
                    help="cgroup directory the demo containers live in (default: %(default)s)")
    args = ap.parse_args(argv)
    if not args.seconds > 0:
        ap.error("--seconds must be positive")
    return args


class Demo:
    def __init__(self, tree, seconds, out=sys.stdout):
        self.tree = tree
        self.seconds = seconds
        self.out = out
        self.t0 = time.monotonic()
        self.stop_reason = None
        self.steady = {}            # name -> (container, process)
        self.batch = None           # the current batch cgroup: container, process, created, state
        self.batch_runs = 0
        self.next_batch = self.t0

    def event(self, text):
        self.out.write("[%6.1fs] %s\n" % (time.monotonic() - self.t0, text))
        self.out.flush()

    def request_stop(self, signum, _frame):
        if self.stop_reason is None:
            self.stop_reason = signal.Signals(signum).name

    def check_stop(self):
        if self.stop_reason is not None:
            raise _Stop(self.stop_reason)

    def sleep(self, seconds):
        end = time.monotonic() + seconds
        while True:
            self.check_stop()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(TICK, left))

    def wait_ready(self, proc, timeout=60.0):
        """Wait for a workload while still reacting to Ctrl-C / SIGTERM."""
        end = time.monotonic() + timeout
        while not proc.is_ready():
            self.check_stop()
            if time.monotonic() > end:
                raise TimeoutError("workload pid %d in %s not ready after %ss"
                                   % (proc.pid, proc.container.path, timeout))
            time.sleep(0.05)

    def start_steady(self):
        for name, spec in STEADY:
            c = self.tree.container(name)
            p = c.spawn(**spec)
            self.steady[name] = (c, p)
        for name, (c, p) in self.steady.items():
            self.wait_ready(p)
            spec = dict(STEADY)[name]
            self.event("created %-5s %s: pid %d + children %s, ~%d%% of a core, %d MiB"
                       % (name, c.path, p.pid, p.child_pids, round(spec["duty"] * 100), spec["memory_mib"]))
        first = self.steady[STEADY[0][0]][0]
        self.event("cgroup directories of %s: %s" % (first.name, ", ".join(sorted(set(first.dirs.values())))))

    def batch_tick(self, now):
        from ccg_lab.synthetic import WorkloadError

        if self.batch is not None:
            b = self.batch
            c, p = b["container"], b["process"]
            try:
                if b["state"] == "running" and p.is_ready():
                    b["state"] = "done"
                    self.event("batch job pid %d did its work: %.2f s of CPU, %d MiB"
                               % (p.pid, p.cpu_used, BATCH_JOB["memory_mib"]))
            except WorkloadError as e:
                b["state"] = "exited"
                self.event("batch job failed: %s" % e)
            if b["state"] == "done" and p.poll() is not None:
                b["state"] = "exited"
                self.event("batch job pid %d exited (status %d); its cgroup stays until %.0f s after it appeared"
                           % (p.pid, p.returncode, BATCH_KEEP))
            if now - b["created"] >= BATCH_KEEP:
                c.remove()
                self.batch = None
                self.event("removed batch %s" % c.path)
        if self.batch is None and now >= self.next_batch:
            self.batch_runs += 1
            c = self.tree.container("batch")
            p = c.spawn(**BATCH_JOB)
            self.batch = {"container": c, "process": p, "created": now, "state": "running"}
            self.next_batch = now + BATCH_EVERY
            self.event("created batch %s (run %d): pid %d, a job of %.0f s CPU and %d MiB"
                       % (c.path, self.batch_runs, p.pid, BATCH_JOB["cpu_seconds"], BATCH_JOB["memory_mib"]))

    def check_steady(self):
        for name, (c, p) in list(self.steady.items()):
            if p.poll() is not None:
                self.event("%s workload pid %d died unexpectedly (status %s)" % (name, p.pid, p.returncode))
                del self.steady[name]

    def run(self):
        self.start_steady()
        end = self.t0 + self.seconds
        self.event("running until %s; Ctrl-C or SIGTERM stops earlier and cleans up"
                   % time.strftime("%H:%M:%S", time.localtime(time.time() + end - time.monotonic())))
        while True:
            self.check_stop()
            now = time.monotonic()
            if now >= end:
                self.event("time is up (%.0f s)" % self.seconds)
                return
            self.batch_tick(now)
            self.check_steady()
            time.sleep(min(TICK, max(0.0, end - time.monotonic())))


def main(argv=None):
    args = _parse(argv)
    if os.geteuid() != 0:
        sys.stderr.write("collectd-cgroups demo: must run as root: it creates cgroups under /sys/fs/cgroup "
                         "and moves processes into them.\nRun it as root, e.g.: sudo make demo\n")
        return 2

    from ccg_lab.synthetic import CgroupTree, CgroupError

    try:
        tree = CgroupTree(args.prefix)
    except (CgroupError, ValueError) as e:
        sys.stderr.write("collectd-cgroups demo: %s\n" % e)
        return 2
    if not tree.hierarchies:
        sys.stderr.write("collectd-cgroups demo: no cgroup hierarchy is mounted (see /proc/self/mountinfo)\n")
        return 2

    demo = Demo(tree, args.seconds)
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, demo.request_stop) for s in handled}
    status = 0
    demo.event("demo containers under %s (%s cgroup layout); collectd shows them as cgroup-web, "
               "cgroup-db, cgroup-batch" % (tree.path, tree.mode))
    if tree.prefix != DEFAULT_PREFIX:
        demo.event("note: the demo collectd configuration matches only /%s/<name>; adapt its regex to "
                   "^%s/(?P<name>[^/]+)$" % (DEFAULT_PREFIX, tree.path))
    try:
        demo.run()
    except _Stop as e:
        demo.event("%s received: stopping" % e)
    except Exception as e:           # report, then still clean up below
        demo.event("error: %s: %s" % (type(e).__name__, e))
        status = 1
    finally:
        for s in handled:            # a second Ctrl-C must not interrupt the cleanup
            signal.signal(s, signal.SIG_IGN)
        left = tree.cleanup()
        if left:
            demo.event("cleanup could not remove: %s" % ", ".join(left))
            status = 1
        else:
            demo.event("cleaned up: processes killed, cgroups under %s removed" % tree.path)
        for s, h in previous.items():
            signal.signal(s, h)
    return status


if __name__ == "__main__":
    sys.exit(main())
