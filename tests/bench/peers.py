"""The benchmark's peers: what users choose between, measured on the same containers in the same run.

- collectd's own C ``cgroups`` plugin (``cgroups.so`` of collectd-core): it reads ``cpuacct.stat`` of every
  cgroup two levels under the cgroup v1 ``cpuacct`` mount (the lab's ``/ccgbench-<hex>/cNNNN``: named
  ``cNNNN``) and dispatches its two values (``cpu-user``, ``cpu-system``); run by tests/bench/run.py's
  ``collectd_run`` (modes ``cgroups`` and ``cgroups-csv``) with the configuration below;
- Netdata (Debian's ``netdata`` 1.37): its ``cgroups`` collector alone (every other collector off, its own
  configuration, database, cache and log directories in the benchmark's work directory, its web server on
  127.0.0.1 of the lab's host namespace, where this module asks it for its charts), ``Netdata`` below; and the
  same daemon with no collector at all, whose cost is taken off.  On a host with cgroup v1 controllers it
  reads v1 (``use unified cgroups = no``), as the plugin and collectd's ``cgroups`` do there: left to
  itself (``auto``), 1.37 takes the cgroup2 mount at /sys/fs/cgroup/unified for the whole tree and finds
  no container.

Every process is started here by its PID, in the lab's host namespace, with SIGTERM sent to it when the
benchmark dies (PR_SET_PDEATHSIG), and stopped by its PID.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

from ccg_lab.synthetic import read_hierarchies

NETDATA = "/usr/sbin/netdata"
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

# collectd's C cgroups plugin, limited to the lab's containers (names c0000...: an ignorelist by name).
CONF_CGROUPS = """\
LoadPlugin cgroups
<Plugin cgroups>
  CGroup "/^c[0-9]{4,}$/"
  IgnoreSelected false
</Plugin>
"""

# The CSV writer in place of the network one (tests/bench/run.py's CONF writes to the network plugin).
CONF_CSV = """\
LoadPlugin csv
<Plugin csv>
  DataDir "{dir}/csv"
  StoreRates false
</Plugin>
"""

NETDATA_PORT = 19999        # in the lab's own network namespace: nobody else listens there

NETDATA_CONF = """\
# The benchmark's Netdata: the cgroups collector ({cgroups}) and nothing else, everything it keeps in {dir}.
[global]
    run as user = root
    hostname = ccgbench
    process scheduling policy = keep
[directories]
    config = {dir}/etc
    log = {dir}/log
    cache = {dir}/cache
    lib = {dir}/lib
    home = {dir}
[db]
    update every = 1
[web]
    bind to = 127.0.0.1:{port}
[registry]
    enabled = no
[health]
    enabled = no
[ml]
    enabled = no
[plugins]
    enable running new plugins = no
    check for new plugins every = 3600
    timex = no
    idlejitter = no
    netdata monitoring = no
    tc = no
    diskspace = no
    proc = no
    statsd = no
    cgroups = {cgroups}
[statsd]
    enabled = no
[plugin:cgroups]
    update every = 1
    use unified cgroups = {unified}
    check for new cgroups every = 10
    max cgroups to allow = 100000
    enable systemd services = no
    search for cgroups in subpaths matching = / /{prefix} !*
    enable by default cgroups matching = /{prefix}/* !*
    run script to rename cgroups matching = !*
"""


def die_with_parent(sig=signal.SIGTERM):
    """In a child before exec (preexec_fn): ``sig`` when the benchmark dies, even by SIGKILL (the kernel
    sends it; nsenter's exec keeps it)."""
    _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def available():
    """None if Netdata can run here, else why not (said in the table)."""
    if not os.path.exists(NETDATA):
        return "%s not found (Debian's netdata package is not installed)" % NETDATA
    return None


# Asked from inside the lab's host namespace (its loopback), by a child Python: the benchmark's own
# threads stay where they are.
_ASK = r"""
import json, sys, urllib.request
with urllib.request.urlopen("http://127.0.0.1:%s/api/v1/charts" % sys.argv[1], timeout=10) as r:
    charts = json.load(r)["charts"]
print(json.dumps({k: sorted(v.get("dimensions", {})) for k, v in charts.items()}))
"""


class Netdata(object):
    """One Netdata of the benchmark: ``start()``, ``charts()``, ``wait_charted(n)``, ``pids()``, ``stop()``."""

    def __init__(self, lab, workdir, tag, cgroups=True):
        self.lab = lab
        self.dir = os.path.join(workdir, "netdata-%s-%d-%s" % ("cgroups" if cgroups else "idle", lab.count, tag))
        self.cgroups = cgroups
        self.proc = None

    def start(self, running):
        for sub in ("etc", "log", "cache", "lib"):
            os.makedirs(os.path.join(self.dir, sub))
        # No anonymous statistics: the opt-out file and DO_NOT_TRACK (and the lab has no route out).
        open(os.path.join(self.dir, "etc", ".opt-out-from-anonymous-statistics"), "w").close()
        conf = os.path.join(self.dir, "etc", "netdata.conf")
        with open(conf, "w") as f:
            f.write(NETDATA_CONF.format(dir=self.dir, port=NETDATA_PORT, prefix=self.lab.prefix,
                                        cgroups="yes" if self.cgroups else "no",
                                        unified="no" if "cpuacct" in read_hierarchies() else "yes"))
        env = dict(os.environ, DO_NOT_TRACK="1")
        with open(os.path.join(self.dir, "stdout"), "w") as out:
            self.proc = subprocess.Popen(["nsenter", "--net=" + self.lab.host_path, "--", NETDATA, "-D", "-c", conf],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=die_with_parent, env=env)
        running[self.proc.pid] = self
        return self

    def charts(self):
        """{chart id: [dimension names]} as Netdata's API lists them; None while it does not answer."""
        res = subprocess.run(["nsenter", "--net=" + self.lab.host_path, "--", sys.executable, "-I", "-c", _ASK,
                              str(NETDATA_PORT)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60)
        if res.returncode != 0:
            return None
        return json.loads(res.stdout)

    def container_charts(self, charts):
        """The charts of the lab's containers: {container name: {chart id: dimensions}}.  Netdata names a
        cgroup's charts ``cgroup_<path without its first slash, / as _>.<chart>``."""
        out = {}
        head = "cgroup_%s_" % self.lab.prefix
        for chart, dims in (charts or {}).items():
            if chart.startswith(head):
                name = chart[len(head):].split(".", 1)[0]
                out.setdefault(name, {})[chart] = dims
        return out

    def wait_ready(self, timeout=None):
        """Until the API answers (the idle daemon), or every container has its charts and their number
        has stayed the same for 3 seconds (the cgroups collector: some charts come on the first non-zero
        value).  Returns the container charts.  Netdata's discovery runs its cgroup-network helper for
        each new cgroup, one after the other: more than 120 s for 1,000 containers here, hence a timeout
        that grows with them."""
        if timeout is None:
            timeout = 120 + 0.6 * self.lab.count
        deadline = time.monotonic() + timeout
        last, stable = None, 0
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("netdata exited (status %s):\n%s" % (self.proc.returncode, self.log_tail()))
            charts = self.charts()
            if charts is not None:
                if not self.cgroups:
                    return {}
                mine = self.container_charts(charts)
                count = sum(len(d) for c in mine.values() for d in c.values())
                if len(mine) == self.lab.count and count == last:
                    stable += 1
                    if stable >= 3:
                        return mine
                else:
                    stable = 0
                last = count
            if time.monotonic() > deadline:
                raise RuntimeError("netdata charted %s of %d containers within %ss:\n%s"
                                   % (len(self.container_charts(charts)) if charts else "none", self.lab.count,
                                      timeout, self.log_tail()))
            time.sleep(1.0)

    def pids(self):
        """Netdata and its children (its spawn server; plugins, were any enabled)."""
        pids = [self.proc.pid]
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
        return pids

    def log_tail(self):
        text = []
        for name in ("stdout", "log/error.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text.append(f.read()[-2000:])
            except OSError:
                pass
        return "\n".join(text)

    def stop(self, running):
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()                # our own process, by its PID
                p.wait(timeout=10)
        if p is not None:
            running.pop(p.pid, None)
