"""Demo containers for a host without any: ``python -m ccg_lab.demo`` (``make demo``).

Creates synthetic containers (cgroups with real processes in them, see :mod:`ccg_lab.synthetic`)
under ``/<prefix>/`` in every cgroup hierarchy, while collectd runs the plugin in another terminal:

- ``web``:   about 20 % of one core, continuously; 64 MiB; 3 child processes
- ``db``:    about 5 % of one core; 200 MiB; 1 child process
- ``batch``: a short job (2 s of CPU, 32 MiB) in a new cgroup every 15 s: the cgroup appears, the job
  runs and exits, the cgroup is removed 10 s after it appeared, and a new one comes 5 s later

Each container has a network namespace of its own with an ``eth0`` (a veth whose other end is in the
demo's "host" namespace, never the root one) and a little traffic on it: web about 8 KiB/s each way,
db 2 KiB/s, batch 4 KiB/s while it exists (see :mod:`ccg_lab.netlab`).

With the demo configuration (``^/collectd-cgroups-demo/(?P<name>[^/]+)$``) they show up as
``cgroup-web``, ``cgroup-db`` and ``cgroup-batch``.  Runs for ``--seconds`` (default 300) or until Ctrl-C or
SIGTERM, and always kills its processes and removes its cgroups and namespaces on the way out; what a demo
killed with SIGKILL left, the next one removes when it starts.  Needs root.
"""

import argparse
import os
import signal
import sys
import time

from ccg_lab.procs import read_text, start_time

DEFAULT_PREFIX = "collectd-cgroups-demo"
BATCH_EVERY = 15.0          # a new batch cgroup every this many seconds
BATCH_KEEP = 10.0           # ... removed this many seconds after it appeared
BATCH_JOB = dict(cpu_seconds=2.0, memory_mib=32, children=0, exit_after=1.0)
STEADY = (
    ("web", dict(duty=0.20, memory_mib=64, children=3)),
    ("db", dict(duty=0.05, memory_mib=200, children=1)),
)
#: bytes per second each way on each container's eth0
TRAFFIC = {"web": 8192, "db": 2048, "batch": 4096}
TICK = 0.2
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    def __init__(self, tree, net, seconds, out=sys.stdout):
        self.tree = tree
        self.net = net
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
            link = self.net.add(name, TRAFFIC[name])
            c = self.tree.container(name)
            p = c.spawn(netns=link["path"], **spec)
            self.steady[name] = (c, p)
        for name, (c, p) in self.steady.items():
            self.wait_ready(p)
            spec = dict(STEADY)[name]
            self.event("created %-5s %s: pid %d + children %s, ~%d%% of a core, %d MiB"
                       % (name, c.path, p.pid, p.child_pids, round(spec["duty"] * 100), spec["memory_mib"]))
            self.event("        %-5s %s" % (name, self.describe_link(name)))
        first = self.steady[STEADY[0][0]][0]
        self.event("cgroup directories of %s: %s" % (first.name, ", ".join(sorted(set(first.dirs.values())))))

    def describe_link(self, name):
        link = self.net.links[name]
        return ("network namespace %s: eth0 %s/30, its peer %s %s in %s, %.0f KiB/s each way"
                % (link["netns"], link["addr"], link["host_if"], link["host_addr"], self.net.host,
                   link["rate"] / 1024.0))

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
                self.net.remove("batch")
                self.batch = None
                self.event("removed batch %s and its network namespace" % c.path)
        if self.batch is None and now >= self.next_batch:
            self.batch_runs += 1
            link = self.net.add("batch", TRAFFIC["batch"])
            c = self.tree.container("batch")
            p = c.spawn(netns=link["path"], **BATCH_JOB)
            self.batch = {"container": c, "process": p, "created": now, "state": "running"}
            self.next_batch = now + BATCH_EVERY
            self.event("created batch %s (run %d): pid %d, a job of %.0f s CPU and %d MiB; %s"
                       % (c.path, self.batch_runs, p.pid, BATCH_JOB["cpu_seconds"], BATCH_JOB["memory_mib"],
                          self.describe_link("batch")))

    def check_steady(self):
        for name, (c, p) in list(self.steady.items()):
            if p.poll() is not None:
                self.event("%s workload pid %d died unexpectedly (status %s)" % (name, p.pid, p.returncode))
                del self.steady[name]

    def remove_leftovers(self):
        """What a demo of the same prefix killed with SIGKILL left: its namespaces (the veths go with the
        host one), then its cgroups once its workloads are gone (they exit by themselves within
        ORPHAN_CHECK_INTERVAL of losing their parent: nothing here signals a process it did not start)."""
        from ccg_lab.synthetic import ORPHAN_CHECK_INTERVAL

        netns, dirs = self.net.leftovers(), self.tree.existing_dirs()
        if not netns and not dirs:
            return
        self.event("an earlier demo was killed without cleaning up (SIGKILL?): removing what it left: %s"
                   % ", ".join(["network namespace " + n for n in netns] + dirs))
        self.net.close()
        end = time.monotonic() + ORPHAN_CHECK_INTERVAL + 10
        while _processes_below(dirs):
            self.check_stop()
            if time.monotonic() > end:
                raise RuntimeError("processes of the earlier demo are still in %s" % ", ".join(dirs))
            time.sleep(TICK)
        left = self.tree.cleanup() + self.net.leftovers()
        if left:
            raise RuntimeError("cannot remove what the earlier demo left: %s" % ", ".join(left))
        self.event("removed what the earlier demo left")

    def run(self):
        self.remove_leftovers()
        self.net.start()
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


def _processes_below(dirs):
    """PIDs in the cgroups at or below ``dirs``."""
    pids = []
    for top in dirs:
        for d, _subdirs, _files in os.walk(top):
            pids += read_text(d + "/cgroup.procs").split()
    return pids


def _claim(base):
    """Note this demo as the owner of ``base``; the PID of a live demo that owns it already, else None."""
    path = "/run/%s.demo-pid" % base
    words = read_text(path).split()
    if len(words) == 2 and words[0].isdigit() and int(words[0]) != os.getpid() \
            and start_time(int(words[0])) == words[1]:
        return int(words[0])
    with open(path, "w") as f:
        f.write("%d %s\n" % (os.getpid(), start_time(os.getpid())))
    return None


def _release(base):
    path = "/run/%s.demo-pid" % base
    if read_text(path).split()[:1] == [str(os.getpid())]:
        os.unlink(path)


def main(argv=None):
    args = _parse(argv)
    if os.geteuid() != 0:
        sys.stderr.write("collectd-cgroups demo: must run as root: it creates cgroups under /sys/fs/cgroup "
                         "and moves processes into them.\nRun it as root, e.g.: sudo make demo\n")
        return 2

    from ccg_lab.netlab import DemoNetwork
    from ccg_lab.synthetic import CgroupTree, CgroupError

    try:
        tree = CgroupTree(args.prefix)
    except (CgroupError, ValueError) as e:
        sys.stderr.write("collectd-cgroups demo: %s\n" % e)
        return 2
    if not tree.hierarchies:
        sys.stderr.write("collectd-cgroups demo: no cgroup hierarchy is mounted (see /proc/self/mountinfo)\n")
        return 2

    net = DemoNetwork(tree.prefix, [name for name, _ in STEADY] + ["batch"])
    owner = _claim(net.base)
    if owner is not None:
        sys.stderr.write("collectd-cgroups demo: another demo (pid %d) runs with the prefix %s\n"
                         % (owner, tree.path))
        return 2
    demo = Demo(tree, net, args.seconds)
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, demo.request_stop) for s in handled}
    status = 0
    demo.event("demo containers under %s (%s cgroup layout); collectd shows them as cgroup-web, "
               "cgroup-db, cgroup-batch" % (tree.path, tree.mode))
    if tree.prefix != DEFAULT_PREFIX:
        demo.event("note: the demo collectd configuration matches only /%s/<name>; adapt its regex to "
                   "^%s/(?P<name>[^/]+)$" % (DEFAULT_PREFIX, tree.path))
    # The command line (console script of the checkout's .venv, made by `make venv`) over make run's config.
    cli = os.path.join(CHECKOUT, ".venv", "bin", "collectd-cgroups")
    config = os.path.join(CHECKOUT, "build", "collectd.conf")
    demo.event("see them with: %s --config %s" % (cli, config))
    demo.event("           or: %s top --config %s" % (cli, config))
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
        left += net.close()
        _release(net.base)
        if left:
            demo.event("cleanup could not remove: %s" % ", ".join(left))
            status = 1
        else:
            demo.event("cleaned up: processes killed, cgroups under %s and network namespaces %s-* removed"
                       % (tree.path, net.base))
        for s, h in previous.items():
            signal.signal(s, h)
    return status


if __name__ == "__main__":
    sys.exit(main())
