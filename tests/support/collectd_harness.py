"""Run the plugin under a real collectd daemon (``/usr/sbin/collectd``).

The configuration is built from the drop-in block users copy,
``conf/collectd-cgroups.conf``: the file is read as it is, a
``ModulePath "<checkout>"`` goes in as the first line inside
``<Plugin python>`` (so the embedded interpreter imports this checkout, not
an installed copy), and the options a test needs go into the ``<Module>``
block (one copy of the block per entry of ``modules``).  Around it: a
logfile (LogLevel info), ``unixsock`` (read back with ``collectdctl``) and
``csv`` (StoreRates false: counters stay raw).

Usage::

    with Collectd(tmp_path, modules=[['Match "^/p/(?P<name>[^/]+)$"']]) as cd:
        cd.wait_listval({"ccg-test/container-cgroup-x/memory-usage"})
        cd.getval("ccg-test/container-cgroup-x/memory-usage")   # {"value": 5.1e7}

``run_test_mode(conf)`` runs ``collectd -T`` (load the config, init, every
read callback once, exit) and returns ``(exit code, output + log)``.

The daemon is stopped with SIGTERM to its own PID (SIGKILL after a timeout)
when the ``with`` block ends, on failure too.  Nothing is ever signalled by
name.
"""

import datetime
import glob
import os
import re
import subprocess
import time

from ccg_lab import procs
from tests.support import CHECKOUT

DROPIN = os.path.join(CHECKOUT, "conf", "collectd-cgroups.conf")
COLLECTD = "/usr/sbin/collectd"
COLLECTDCTL = "/usr/bin/collectdctl"
HOSTNAME = "ccg-test"
PLUGIN = "container"

# What collectd logs when a read callback raises (and it then doubles the interval).
READ_FAILED = re.compile(r"read-function of plugin .* failed", re.I)


class HarnessError(AssertionError):
    pass


# --------------------------------------------------------------------------------------------------------
# Configuration


def dropin_text(path=DROPIN):
    with open(path) as f:
        return f.read()


def _module_block(text):
    """(start, end) offsets of the first ``<Module ...>...</Module>`` block of the drop-in, end included."""
    m = re.search(r"^[ \t]*<Module\b[^>]*>.*?^[ \t]*</Module>[ \t]*\n", text, re.M | re.S)
    if m is None:
        raise HarnessError("no <Module> block in %s" % DROPIN)
    return m.start(), m.end()


def plugin_config(modules=((),), module_path=CHECKOUT, dropin=None):
    """The drop-in block, adapted for a test.

    ``modules``: a list, one entry per ``<Module "collectd_cgroups">`` block, each a list of option lines
    (``'Match "^/x/(?P<name>[^/]+)$"'``, ``"Interval 1"``) added at the end of a copy of the drop-in's
    block (its comments stay).  ``None`` keeps the drop-in's block exactly as it is; ``[]`` drops the
    ``<Module>`` block (the plugin then runs one instance with the defaults).
    """
    text = dropin_text() if dropin is None else dropin
    opening = re.search(r"^([ \t]*)<Plugin python>[ \t]*\n", text, re.M)
    if opening is None:
        raise HarnessError("no <Plugin python> in the drop-in block")
    indent = opening.group(1) + "  "
    text = text[:opening.end()] + '%sModulePath "%s"\n' % (indent, module_path) + text[opening.end():]
    if modules is None:
        return text
    start, end = _module_block(text)
    block = text[start:end]
    close = re.search(r"^([ \t]*)</Module>", block, re.M)
    option_indent = close.group(1) + "  "
    copies = []
    for options in modules:
        added = "".join("%s%s\n" % (option_indent, line) for line in options)
        copies.append(block[:close.start()] + added + block[close.start():])
    return text[:start] + "".join(copies) + text[end:]


def collectd_config(workdir, modules=((),), interval=1, log_level="info", dropin=None, hostname=HOSTNAME,
                    extra="", plugin=True):
    """A whole collectd.conf for a test in ``workdir``; returns its text.  ``extra``: more configuration
    (writers, the network plugin) before the plugin's block; ``plugin=False``: no plugin at all (a
    central collectd that only receives)."""
    paths = Paths(workdir)
    head = """\
# Written by tests/support/collectd_harness.py
Hostname "{host}"
FQDNLookup false
BaseDir "{base}"
PIDFile "{pidfile}"
Interval {interval}

LoadPlugin logfile
<Plugin logfile>
  LogLevel {level}
  File "{log}"
  Timestamp true
  PrintSeverity true
</Plugin>

LoadPlugin unixsock
<Plugin unixsock>
  SocketFile "{sock}"
  SocketGroup "root"
</Plugin>

LoadPlugin csv
<Plugin csv>
  DataDir "{data}"
  StoreRates false
</Plugin>

""".format(host=hostname, base=paths.base, pidfile=paths.pidfile, interval=interval, level=log_level,
           log=paths.log, sock=paths.sock, data=paths.data)
    return head + extra + (plugin_config(modules, dropin=dropin) if plugin else "")


class Paths(object):
    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.base = os.path.join(self.workdir, "base")
        self.pidfile = os.path.join(self.base, "collectd.pid")
        self.log = os.path.join(self.workdir, "collectd.log")
        self.sock = os.path.join(self.workdir, "collectd.sock")
        self.data = os.path.join(self.workdir, "csv")
        self.conf = os.path.join(self.workdir, "collectd.conf")

    def makedirs(self):
        for d in (self.base, self.data):
            os.makedirs(d, exist_ok=True)


def write_config(workdir, **kwargs):
    """Write ``collectd_config(workdir, **kwargs)`` to ``<workdir>/collectd.conf``; return its Paths."""
    paths = Paths(workdir)
    paths.makedirs()
    with open(paths.conf, "w") as f:
        f.write(collectd_config(workdir, **kwargs))
    return paths


_read = procs.read_text
_terminate = procs.terminate


def run_test_mode(workdir, timeout=120, **kwargs):
    """``collectd -T -C <conf>``: load the config, run init and each read callback once, exit.

    Returns ``(exit code, text)`` where text is stdout, stderr and the log file together.
    """
    paths = write_config(workdir, **kwargs)
    proc = subprocess.Popen([COLLECTD, "-T", "-C", paths.conf], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=paths.workdir, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _terminate(proc, 5)
        raise HarnessError("collectd -T did not exit within %ss; log:\n%s" % (timeout, _read(paths.log)))
    return proc.returncode, out.decode(errors="replace") + "\n--- log ---\n" + _read(paths.log)


# --------------------------------------------------------------------------------------------------------
# Waiting


def wait_until(predicate, timeout=20.0, pause=0.2, what="condition"):
    """Poll ``predicate`` until it returns something true (returned), at most ``timeout`` seconds."""
    return procs.wait_until(predicate, timeout, pause, what, error=HarnessError,
                            retry_on=(OSError, ValueError, HarnessError))


# --------------------------------------------------------------------------------------------------------
# A running daemon


def identifier(instance, type_instance, host=HOSTNAME, plugin=PLUGIN):
    """``host/plugin-instance/type-type_instance``, e.g. identifier("cgroup-web", "memory-usage")."""
    return "%s/%s-%s/%s" % (host, plugin, instance, type_instance)


class Collectd(object):
    """``collectd -f -C <conf>`` for one test; a context manager."""

    def __init__(self, workdir, modules=((),), interval=1, log_level="info", dropin=None, **config):
        self.paths = write_config(workdir, modules=modules, interval=interval, log_level=log_level,
                                  dropin=dropin, **config)
        self.interval = interval
        self.proc = None

    # -- life cycle

    def start(self, timeout=30):
        if self.proc is not None:
            raise HarnessError("already started")
        self._stdout = open(os.path.join(self.paths.workdir, "collectd.stdout"), "wb")
        self.proc = subprocess.Popen([COLLECTD, "-f", "-C", self.paths.conf], stdout=self._stdout,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.paths.workdir, start_new_session=True)
        try:
            wait_until(lambda: self._started(), timeout, what="collectd to open %s" % self.paths.sock)
        except BaseException:
            self.stop()
            raise
        return self

    def _started(self):
        if self.proc.poll() is not None:
            raise HarnessError("collectd exited with status %s during start-up; output:\n%s"
                               % (self.proc.returncode, self.output()))
        if not os.path.exists(self.paths.sock):
            return False
        return self.ctl("listval", check=False).returncode == 0

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM to collectd's PID, SIGKILL after ``timeout``; returns its exit status."""
        if self.proc is None:
            return None
        rc = _terminate(self.proc, timeout)
        if not self._stdout.closed:
            self._stdout.close()
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- output

    def log(self):
        return _read(self.paths.log)

    def output(self):
        return _read(os.path.join(self.paths.workdir, "collectd.stdout")) + "\n--- log ---\n" + self.log()

    def read_failures(self):
        """Log lines saying a read callback failed (collectd then suspends it, doubling its interval)."""
        return [line for line in self.log().splitlines() if READ_FAILED.search(line)]

    # -- unixsock

    def ctl(self, *args, check=True, timeout=10):
        res = subprocess.run([COLLECTDCTL, "-s", self.paths.sock] + list(args), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=timeout)
        if check and res.returncode != 0:
            raise HarnessError("collectdctl %s failed (%s): %s%s" % (
                " ".join(args), res.returncode, res.stdout.decode(errors="replace"),
                res.stderr.decode(errors="replace")))
        return res

    def listval(self):
        """Identifiers in collectd's value cache: a set of ``host/plugin-inst/type-inst``."""
        out = self.ctl("listval").stdout.decode()
        ids = set()
        for line in out.splitlines():
            parts = line.split()
            if parts:
                ids.add(parts[-1])      # collectdctl prints the identifier only (unixsock: "<time> <id>")
        return ids

    def getval(self, ident):
        """``{data source: value}`` of one identifier; DERIVE/COUNTER come back as rates per second."""
        out = self.ctl("getval", ident).stdout.decode()
        values = {}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = float(value)
        if not values:
            raise HarnessError("getval %s: no value in %r" % (ident, out))
        return values

    def wait_listval(self, wanted, timeout=20):
        """Wait until every identifier of ``wanted`` is listed; returns the listing."""
        wanted = set(wanted)

        def ready():
            ids = self.listval()
            return ids if wanted <= ids else None
        try:
            return wait_until(ready, timeout, what="identifiers %s" % sorted(wanted))
        except HarnessError as e:
            raise HarnessError("%s; listed: %s\nlog:\n%s" % (e, sorted(self._safe_listval()), self.log()))

    def wait_gone(self, prefix, timeout=20):
        """Wait until no listed identifier starts with ``prefix``."""
        return wait_until(lambda: not any(i.startswith(prefix) for i in self.listval()),
                          timeout, what="identifiers %s* to leave the cache" % prefix)

    def _safe_listval(self):
        try:
            return self.listval()
        except Exception:
            return set()

    # -- CSV

    def csv_dir(self, instance, host=HOSTNAME, plugin=PLUGIN):
        return os.path.join(self.paths.data, host, "%s-%s" % (plugin, instance))

    def csv_files(self, instance, type_instance, **kw):
        """CSV files of one identifier, oldest date first (the csv plugin writes one file a day)."""
        pattern = os.path.join(self.csv_dir(instance, **kw), "%s-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
                               % glob.escape(type_instance))
        return sorted(glob.glob(pattern))

    def csv_rows(self, instance, type_instance, **kw):
        """[(epoch, value, ...)] of one identifier, all days, in file order."""
        rows = []
        for path in self.csv_files(instance, type_instance, **kw):
            with open(path) as f:
                for line in f:
                    line = line.strip()
                    if not line or line.startswith("epoch"):
                        continue
                    rows.append(tuple(float(x) for x in line.split(",")))
        return rows

    def wait_csv_rows(self, instance, type_instance, count, timeout=30, **kw):
        """Wait until the identifier has at least ``count`` CSV rows; returns them."""
        def enough():
            rows = self.csv_rows(instance, type_instance, **kw)
            return rows if len(rows) >= count else None
        return wait_until(enough, timeout, what="%d CSV rows of %s/%s" % (count, instance, type_instance))

    # -- the process

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def rss_bytes(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise HarnessError("no VmRSS for pid %d" % self.pid)

    def threads(self):
        return len(os.listdir("/proc/%d/task" % self.pid))


def local_dates(around=None):
    """Dates the csv plugin may use for a value written at ``around`` (local time, +-1 minute)."""
    t = time.time() if around is None else around
    return {datetime.date.fromtimestamp(t + d).isoformat() for d in (-60, 0, 60)}
