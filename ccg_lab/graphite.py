"""Debian's real Graphite for the tests and ``make graphite``: ``carbon-cache`` (graphite-carbon), the whisper
tools (python3-whisper) and graphite-web under Django's development server, each private to one work
directory, on 127.0.0.1.

Usage::

    with Carbon(tmp_path / "carbon") as carbon:                 # retention="1s:1h,1m:1d" by default
        carbon.send(["ccg-test.container-cgroup-x.cpu-total 42 %d" % ts])
        carbon.wait_for_metric("ccg-test.container-cgroup-x.cpu-total", 10)
        carbon.fetch("ccg-test.container-cgroup-x.cpu-total", 600)       # [(ts, 42.0)]
        with GraphiteWeb(tmp_path / "web", carbon.whisper_dir) as web:
            web.render_json("ccg-test.*.cpu-total", frm="-10min")        # [{"target", "datapoints": [[v, ts]]}]
            web.render_png(["ccg-test.*.cpu-total"], "cpu.png", frm="-5min")
            web.find("ccg-test.*")                                       # [{"text": "container-cgroup-x", ...}]

Everything runs with Debian's interpreter (``/usr/bin/python3``; pyenv's python3 comes first on PATH
here) in a clean environment (PATH=/usr/sbin:/usr/bin:/sbin:/bin, HOME and XDG_CACHE_HOME in the work
directory, no byte code written).

- carbon: ``/usr/bin/carbon-cache --config=<workdir>/conf/carbon.conf --nodaemon ... start`` (carbon's
  own wrapper around twistd; --nodaemon keeps it in the foreground, logging to stdout).  carbon reads
  storage-schemas.conf and storage-aggregation.conf from the directory of the carbon.conf it is given.
  The line receiver and the cache query port listen on 127.0.0.1, on ports free when chosen; the pickle
  receiver is off (port 0), as are carbon's own metrics (CARBON_METRIC_INTERVAL 0: no ``carbon.agents.*``
  files among the test's) and tagging (ENABLE_TAGS False: carbon would POST every new series to
  GRAPHITE_URL, http://127.0.0.1:80).  carbon binds its receivers with SO_REUSEPORT, so a port taken by
  another process of the same user would not fail the start: the ports are picked free just before.
- graphite-web: Debian's ``graphite.settings`` imports its local settings from the module named by
  ``GRAPHITE_SETTINGS_MODULE`` (default ``local_settings``, i.e. /etc/graphite/local_settings.py, which
  points at /var/lib/graphite).  Two modules are written to the work directory: ``graphite_lab_local``
  (the paths, the database, CARBONLINK_HOSTS, ...), named by GRAPHITE_SETTINGS_MODULE so the package's
  derived settings are computed from it and /etc/graphite's file is not read, and
  ``graphite_lab_settings`` (DJANGO_SETTINGS_MODULE): ``from graphite.settings import *`` and then the
  local module again on top, so the overrides hold whatever graphite.settings made of them.
  ``python3 -m django migrate`` makes the sqlite database, then ``python3 -m django runserver --noreload
  127.0.0.1:<port>`` serves.  Without ``carbonlink`` graphite-web reads whisper only (CARBONLINK_HOSTS
  empty, REPLICATION_FACTOR 0, which graphite-web needs with no host; Debian's default, 127.0.0.1:7002,
  would ask whatever listens there).

Processes are started in their own sessions and stopped by their own PIDs, SIGTERM then SIGKILL after a
timeout; nothing is ever signalled by name.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from ccg_lab import procs

SYSPY = "/usr/bin/python3"
CARBON_CACHE = "/usr/bin/carbon-cache"
WHISPER_FETCH = "/usr/bin/whisper-fetch"
WHISPER_INFO = "/usr/bin/whisper-info"
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
LOCALHOST = "127.0.0.1"

DEFAULT_RETENTION = "1s:1h,1m:1d"


class LabError(AssertionError):
    pass


# --------------------------------------------------------------------------------------------------------
# Helpers


def free_port(host=LOCALHOST, kind=socket.SOCK_STREAM):
    """A TCP (or, with ``kind=socket.SOCK_DGRAM``, UDP) port nobody uses right now (bind port 0, read it,
    close)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(port, host=LOCALHOST, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


def clean_env(workdir, **extra):
    """The environment of every Graphite process: Debian's PATH, HOME and caches in ``workdir``."""
    env = {
        "PATH": CLEAN_PATH,
        "HOME": str(workdir),
        "XDG_CACHE_HOME": os.path.join(str(workdir), "cache"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
    }
    env.update(extra)
    return env


def wait_until(predicate, timeout=20.0, pause=0.1, what="condition"):
    """Poll ``predicate`` until it returns something true (returned); LabError after ``timeout`` seconds."""
    return procs.wait_until(predicate, timeout, pause, what, error=LabError)


_read = procs.read_text
_terminate = procs.terminate


class _Daemon(object):
    """A process of ours, output to ``<workdir>/<name>.out``, stopped by its PID."""

    name = "daemon"

    def __init__(self, workdir):
        self.workdir = os.path.abspath(str(workdir))
        os.makedirs(self.workdir, exist_ok=True)
        self.proc = None
        self._out = None
        self.out_path = os.path.join(self.workdir, "%s.out" % self.name)

    def _spawn(self, argv, env):
        if self.proc is not None:
            raise LabError("%s already started" % self.name)
        self._out = open(self.out_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir, env=env,
                                     start_new_session=True)

    def _wait_port(self, port, timeout):
        def up():
            if self.proc.poll() is not None:
                raise LabError("%s exited with status %s during start-up; output:\n%s"
                               % (self.name, self.proc.returncode, self.output()))
            return port_open(port)
        try:
            wait_until(up, timeout, what="%s to listen on %s:%d" % (self.name, LOCALHOST, port))
        except LabError as e:
            raise LabError("%s; output:\n%s" % (e, self.output()))

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self):
        return _read(self.out_path)

    def log(self):
        """Its output, then every file of its log directory (carbon in --nodaemon mode logs to stdout)."""
        text = self.output()
        if os.path.isdir(self.log_dir):
            for name in sorted(os.listdir(self.log_dir)):
                text += "\n--- %s ---\n%s" % (name, _read(os.path.join(self.log_dir, name)))
        return text

    def stop(self, timeout=10):
        """SIGTERM to the PID, SIGKILL after ``timeout``; returns the exit status (None if never started)."""
        if self.proc is None:
            return None
        try:
            return _terminate(self.proc, timeout)
        finally:
            if self._out is not None and not self._out.closed:
                self._out.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------------------------------------
# carbon-cache


CARBON_CONF = """\
# Written by ccg_lab/graphite.py
[cache]
STORAGE_DIR = {storage}
LOCAL_DATA_DIR = {whisper}
WHITELISTS_DIR = {lists}
CONF_DIR = {conf}
LOG_DIR = {log}
PID_DIR = {run}
USER =
DATABASE = whisper

ENABLE_LOGROTATION = False
LOG_UPDATES = False
LOG_CREATES = False
LOG_CACHE_HITS = False
LOG_CACHE_QUEUE_SORTS = False
LOG_LISTENER_CONNECTIONS = False

MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = 100000
MAX_UPDATES_PER_SECOND_ON_SHUTDOWN = 100000
MAX_CREATES_PER_MINUTE = inf
CACHE_WRITE_STRATEGY = sorted
WHISPER_AUTOFLUSH = True
WHISPER_FALLOCATE_CREATE = False
CARBON_METRIC_INTERVAL = 0

LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {line_port}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = 0
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {query_port}
ENABLE_MANHOLE = False
ENABLE_AMQP = False
USE_FLOW_CONTROL = True
USE_INSECURE_UNPICKLER = False
# No tagging: carbon would POST every new series to graphite-web at GRAPHITE_URL (http://127.0.0.1:80).
ENABLE_TAGS = False
"""


class Carbon(_Daemon):
    """Debian's ``carbon-cache`` in the foreground, private to ``workdir``; a context manager.

    ``retention``: the retentions of the default schema (pattern ``.*``); ``aggregation``: its
    aggregationMethod, ``x_files_factor`` its xFilesFactor.  ``port``: the plaintext line receiver;
    ``query_port``: the cache query (CARBONLINK) port; ``whisper_dir``: where the .wsp files go.
    """

    name = "carbon-cache"

    def __init__(self, workdir, retention=DEFAULT_RETENTION, aggregation="average", x_files_factor=0.0):
        _Daemon.__init__(self, workdir)
        self.retention = retention
        self.conf_dir = os.path.join(self.workdir, "conf")
        self.storage_dir = os.path.join(self.workdir, "storage")
        self.whisper_dir = os.path.join(self.workdir, "whisper")
        self.lists_dir = os.path.join(self.storage_dir, "lists")
        self.log_dir = os.path.join(self.workdir, "log")
        self.run_dir = os.path.join(self.workdir, "run")
        self.conf = os.path.join(self.conf_dir, "carbon.conf")
        self.pidfile = os.path.join(self.run_dir, "carbon-cache.pid")
        self.port = free_port()
        self.query_port = free_port()
        while self.query_port == self.port:
            self.query_port = free_port()
        self._write_config(retention, aggregation, x_files_factor)

    @property
    def carbonlink(self):
        """``host:port`` of the cache query port, as graphite-web's CARBONLINK_HOSTS wants it."""
        return "%s:%d" % (LOCALHOST, self.query_port)

    def _write_config(self, retention, aggregation, x_files_factor):
        for d in (self.conf_dir, self.storage_dir, self.whisper_dir, self.lists_dir, self.log_dir,
                  self.run_dir):
            os.makedirs(d, exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(CARBON_CONF.format(storage=self.storage_dir, whisper=self.whisper_dir,
                                       lists=self.lists_dir, conf=self.conf_dir, log=self.log_dir,
                                       run=self.run_dir, line_port=self.port, query_port=self.query_port))
        with open(os.path.join(self.conf_dir, "storage-schemas.conf"), "w") as f:
            f.write("# Written by ccg_lab/graphite.py\n[default]\npattern = .*\nretentions = %s\n"
                    % retention)
        with open(os.path.join(self.conf_dir, "storage-aggregation.conf"), "w") as f:
            f.write("# Written by ccg_lab/graphite.py\n[default]\npattern = .*\n"
                    "xFilesFactor = %s\naggregationMethod = %s\n" % (x_files_factor, aggregation))

    def env(self):
        return clean_env(self.workdir, GRAPHITE_ROOT=self.workdir, GRAPHITE_CONF_DIR=self.conf_dir,
                         GRAPHITE_STORAGE_DIR=self.storage_dir)

    def start(self, timeout=30):
        self._spawn([SYSPY, CARBON_CACHE, "--config=%s" % self.conf, "--nodaemon",
                     "--pidfile=%s" % self.pidfile, "--logdir=%s" % self.log_dir, "start"], self.env())
        try:
            self._wait_port(self.port, timeout)
            self._wait_port(self.query_port, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    # -- writing

    def send(self, lines, timeout=10):
        """Plaintext protocol over TCP: ``lines`` are ``"path value timestamp"`` strings (a newline is
        added where missing) or ``(path, value, timestamp)`` tuples."""
        if isinstance(lines, (str, tuple)):
            lines = [lines]
        data = []
        for line in lines:
            if isinstance(line, tuple):
                line = "%s %r %d" % (line[0], float(line[1]), int(line[2]))
            data.append(line if line.endswith("\n") else line + "\n")
        with socket.create_connection((LOCALHOST, self.port), timeout) as s:
            s.sendall("".join(data).encode())
            s.shutdown(socket.SHUT_WR)

    # -- reading

    def whisper_files(self):
        """``{metric path: .wsp file}`` of every whisper file carbon made."""
        files = {}
        for directory, _, names in os.walk(self.whisper_dir):
            for name in names:
                if name.endswith(".wsp"):
                    full = os.path.join(directory, name)
                    rel = os.path.relpath(full, self.whisper_dir)[:-len(".wsp")]
                    files[rel.replace(os.sep, ".")] = full
        return files

    def whisper_file(self, path):
        return os.path.join(self.whisper_dir, *path.split(".")) + ".wsp"

    def _tool(self, argv, timeout=30):
        res = subprocess.run([SYSPY] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=clean_env(self.workdir), cwd=self.workdir, timeout=timeout)
        if res.returncode != 0:
            raise LabError("%s failed (%s): %s%s" % (" ".join(argv), res.returncode,
                                                     res.stdout.decode(errors="replace"),
                                                     res.stderr.decode(errors="replace")))
        return res.stdout.decode()

    def info(self, path):
        """``whisper-info --json`` of a metric: archives, aggregationMethod, xFilesFactor, ..."""
        return json.loads(self._tool([WHISPER_INFO, "--json", self.whisper_file(path)]))

    def fetch(self, path, seconds, until=None):
        """``[(timestamp, value)]`` of the non-None points of the last ``seconds`` (to ``until``, default
        now), as ``whisper-fetch --json`` reads them from the file; oldest first."""
        until = int(time.time()) if until is None else int(until)
        out = self._tool([WHISPER_FETCH, "--json", "--from=%d" % (until - int(seconds)),
                          "--until=%d" % until, self.whisper_file(path)])
        data = json.loads(out)
        start, step = data["start"], data["step"]
        return [(start + i * step, v) for i, v in enumerate(data["values"]) if v is not None]

    def wait_for_metric(self, path, timeout=20, points=1, seconds=3600):
        """Wait until the metric's whisper file holds at least ``points`` points of the last ``seconds``;
        returns them."""
        def ready():
            if not os.path.exists(self.whisper_file(path)):
                return None
            found = self.fetch(path, seconds)
            return found if len(found) >= points else None
        try:
            return wait_until(ready, timeout, what="%d point(s) of %s in whisper" % (points, path))
        except LabError as e:
            raise LabError("%s; files: %s\nlog:\n%s" % (e, sorted(self.whisper_files()), self.log()))


# --------------------------------------------------------------------------------------------------------
# graphite-web


LOCAL_SETTINGS = """\
# Written by ccg_lab/graphite.py: graphite-web's local settings for one test (in place of
# Debian's /etc/graphite/local_settings.py), named by GRAPHITE_SETTINGS_MODULE.
SECRET_KEY = "graphite-lab-not-a-secret"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DEBUG = False
TIME_ZONE = "UTC"
LOG_ROTATION = False
LOG_INFO_PERFORMANCE = False
DEFAULT_XFILES_FACTOR = 0
GRAPHITE_ROOT = "/usr/share/graphite-web"
STATIC_ROOT = "/usr/share/graphite-web/static"
CONF_DIR = {conf!r}
STORAGE_DIR = {storage!r}
WHISPER_DIR = {whisper!r}
CERES_DIR = {ceres!r}
RRD_DIR = {rrd!r}
STANDARD_DIRS = [{whisper!r}]
INDEX_FILE = {index!r}
WHITELIST_FILE = {whitelist!r}
LOG_DIR = {log!r}
DATABASES = {{
    "default": {{
        "NAME": {db!r},
        "ENGINE": "django.db.backends.sqlite3",
        "USER": "", "PASSWORD": "", "HOST": "", "PORT": "",
    }},
}}
CARBONLINK_HOSTS = {carbonlink!r}
CARBONLINK_TIMEOUT = 1.0
REPLICATION_FACTOR = {replication}
CLUSTER_SERVERS = []
MEMCACHE_HOSTS = []
FUNCTION_PLUGINS = []
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
SILENCED_SYSTEM_CHECKS = ["admin.W411"]
"""

DJANGO_SETTINGS = """\
# Written by ccg_lab/graphite.py: DJANGO_SETTINGS_MODULE of graphite-web for one test.
from graphite.settings import *      # noqa: F401,F403  (it has read graphite_lab_local already)
from graphite_lab_local import *     # noqa: F401,F403  (and the overrides hold whatever it made of them)
"""

# Settings that must come out of Django as written to graphite_lab_local, checked once before serving.
CHECKED = ("STORAGE_DIR", "WHISPER_DIR", "STANDARD_DIRS", "INDEX_FILE", "LOG_DIR", "CARBONLINK_HOSTS",
           "SECRET_KEY")


class GraphiteWeb(_Daemon):
    """graphite-web (Debian's package) under ``django runserver --noreload`` on 127.0.0.1:<free port>.

    ``whisper_dir``: the whisper tree to serve (``Carbon.whisper_dir``); ``carbonlink``: ``host:port`` of
    a carbon cache query port (``Carbon.carbonlink``) to merge carbon's cache in, None for whisper only.
    ``url``: ``http://127.0.0.1:<port>``.
    """

    name = "graphite-web"

    def __init__(self, workdir, whisper_dir, carbonlink=None):
        _Daemon.__init__(self, workdir)
        self.whisper_dir = os.path.abspath(str(whisper_dir))
        self.storage_dir = os.path.join(self.workdir, "storage")
        self.log_dir = os.path.join(self.workdir, "log")
        self.conf_dir = os.path.join(self.workdir, "conf")
        self.settings_dir = os.path.join(self.workdir, "settings")
        self.db = os.path.join(self.storage_dir, "graphite.db")
        self.carbonlink = [carbonlink] if carbonlink else []
        self.port = free_port()
        self.url = "http://%s:%d" % (LOCALHOST, self.port)
        self._write_settings()

    def _write_settings(self):
        for d in (self.storage_dir, self.log_dir, self.conf_dir, self.settings_dir,
                  os.path.join(self.workdir, "cache")):
            os.makedirs(d, exist_ok=True)
        self.expected = {
            "STORAGE_DIR": self.storage_dir,
            "WHISPER_DIR": self.whisper_dir,
            "STANDARD_DIRS": [self.whisper_dir],
            "INDEX_FILE": os.path.join(self.storage_dir, "index"),
            "LOG_DIR": self.log_dir,
            "CARBONLINK_HOSTS": self.carbonlink,
            "SECRET_KEY": "graphite-lab-not-a-secret",
            "debian_local_settings": False,     # /etc/graphite/local_settings.py was not imported
        }
        with open(os.path.join(self.settings_dir, "graphite_lab_local.py"), "w") as f:
            f.write(LOCAL_SETTINGS.format(
                conf=self.conf_dir, storage=self.storage_dir, whisper=self.whisper_dir,
                ceres=os.path.join(self.storage_dir, "ceres"), rrd=os.path.join(self.storage_dir, "rrd"),
                index=self.expected["INDEX_FILE"], whitelist=os.path.join(self.storage_dir, "whitelist"),
                log=self.log_dir, db=self.db, carbonlink=self.carbonlink,
                # graphite-web refuses a replication factor above the number of carbonlink hosts
                replication=1 if self.carbonlink else 0))
        with open(os.path.join(self.settings_dir, "graphite_lab_settings.py"), "w") as f:
            f.write(DJANGO_SETTINGS)

    def env(self):
        return clean_env(self.workdir, PYTHONPATH=self.settings_dir,
                         GRAPHITE_SETTINGS_MODULE="graphite_lab_local",
                         DJANGO_SETTINGS_MODULE="graphite_lab_settings")

    def django(self, *args, timeout=120):
        """``python3 -m django <args>`` with the test's settings; returns stdout (raises on failure)."""
        res = subprocess.run([SYSPY, "-m", "django"] + list(args), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env(),
                             cwd=self.workdir, timeout=timeout)
        if res.returncode != 0:
            raise LabError("django %s failed (%s):\n%s" % (" ".join(args), res.returncode,
                                                           res.stdout.decode(errors="replace")))
        return res.stdout.decode(errors="replace")

    def setup(self):
        """One Debian python3: load the settings Django ends up with and check they are ours (not
        /etc/graphite's: raise if not), then ``migrate`` (the sqlite database in the work directory).
        Returns the checked settings."""
        code = ("import json, django; from django.conf import settings; django.setup(); "
                "import sys; got = {k: getattr(settings, k) for k in %r}; "
                "got['debian_local_settings'] = 'local_settings' in sys.modules; "
                "print('SETTINGS ' + json.dumps(got), flush=True); "
                "from django.core.management import call_command; "
                "call_command('migrate', interactive=False, verbosity=0)" % (CHECKED,))
        res = subprocess.run([SYSPY, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=self.env(), cwd=self.workdir, timeout=120)
        out = res.stdout.decode(errors="replace")
        with open(self.out_path, "a") as f:
            f.write(out)
        lines = [l for l in out.splitlines() if l.startswith("SETTINGS ")]
        if not lines:
            raise LabError("graphite-web's settings do not load (%s):\n%s" % (res.returncode, out))
        got = json.loads(lines[-1][len("SETTINGS "):])
        wrong = {k: (got.get(k), v) for k, v in self.expected.items() if got.get(k) != v}
        if wrong:
            raise LabError("graphite-web's settings are not the test's (got, wanted): %s" % wrong)
        if res.returncode != 0:
            raise LabError("graphite-web's migrate failed (%s):\n%s" % (res.returncode, out))
        return got

    def start(self, timeout=60):
        self.settings = self.setup()
        self._spawn([SYSPY, "-m", "django", "runserver", "--noreload", "%s:%d" % (LOCALHOST, self.port)],
                    self.env())
        try:
            self._wait_port(self.port, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def exceptions(self):
        """graphite-web's exception.log (tracebacks it caught and logged, a request still answered)."""
        return _read(os.path.join(self.log_dir, "exception.log"))

    # -- HTTP

    def get(self, path, params=(), timeout=30):
        """GET ``path`` with query ``params`` (a list of pairs: targets repeat); returns the body."""
        url = self.url + path + ("?" + urllib.parse.urlencode(list(params)) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            raise LabError("GET %s: HTTP %s: %s\nlog:\n%s" % (url, e.code, e.read()[:2000].decode(
                errors="replace"), self.log()))

    def render_json(self, target, frm="-10min", until=None):
        """``/render?target=...&format=json&from=...``: ``[{"target": ..., "datapoints": [[value, ts],
        ...]}]``, None values included.  ``target``: one target or a list of them."""
        targets = [target] if isinstance(target, str) else list(target)
        params = [("target", t) for t in targets] + [("format", "json"), ("from", frm)]
        if until is not None:
            params.append(("until", until))
        return json.loads(self.get("/render", params))

    def render_png(self, targets, path, frm="-10min", until=None, width=800, height=400, **params):
        """``/render?target=...&format=png``, saved to ``path``; returns ``path``.  Further render
        parameters as keywords: ``title="CPU"``, ``lineMode="connected"``, ``yMin=0``."""
        targets = [targets] if isinstance(targets, str) else list(targets)
        extra = sorted(params.items())
        params = [("target", t) for t in targets] + [("format", "png"), ("from", frm),
                                                     ("width", width), ("height", height)] + extra
        if until is not None:
            params.append(("until", until))
        body = self.get("/render", params)
        if not body.startswith(b"\x89PNG\r\n\x1a\n"):
            raise LabError("/render format=png gave no PNG: %r" % body[:200])
        with open(str(path), "wb") as f:
            f.write(body)
        return str(path)

    def find(self, query):
        """``/metrics/find?query=...`` (what Grafana asks for template variables): a list of
        ``{"text", "id", "leaf", "expandable", ...}``."""
        return json.loads(self.get("/metrics/find", [("query", query)]))


# -- make graphite ---------------------------------------------------------------------------------------------

WRITE_GRAPHITE = """
# Added by `make graphite` (ccg_lab/graphite.py): write_graphite with its defaults, to the local carbon.
LoadPlugin write_graphite
<Plugin write_graphite>
  <Node "local">
    Host "127.0.0.1"
    Port "%d"
    Protocol "tcp"
  </Node>
</Plugin>
"""


def main(argv=None):
    """``python -m ccg_lab.graphite BUILD_DIR COLLECTD_CONF``: carbon-cache and graphite-web under
    BUILD_DIR/graphite, and collectd in the foreground with COLLECTD_CONF plus write_graphite to that
    carbon, until Ctrl-C; then everything is stopped by its PID."""
    import argparse
    p = argparse.ArgumentParser(prog="make graphite")
    p.add_argument("build_dir")
    p.add_argument("collectd_conf")
    args = p.parse_args(argv)
    # Ctrl-C, or SIGTERM, ends the run (also where a shell started it in the background, SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    work = os.path.join(os.path.abspath(args.build_dir), "graphite")
    os.makedirs(work, exist_ok=True)
    with Carbon(os.path.join(work, "carbon"), retention="5s:1d,1m:7d") as carbon, \
            GraphiteWeb(os.path.join(work, "web"), carbon.whisper_dir) as web:
        conf = os.path.join(work, "collectd.conf")
        with open(args.collectd_conf) as f, open(conf, "w") as out:
            out.write(f.read() + WRITE_GRAPHITE % carbon.port)
        print("carbon-cache on 127.0.0.1:%d (whisper files in %s)" % (carbon.port, carbon.whisper_dir))
        print("graphite-web: %s/render?target=collectd-cgroups-demo.container-*.cpu-total&from=-10min"
              % web.url)
        print("collectd in the foreground with %s (Ctrl-C stops everything); `make demo` in another "
              "terminal gives it containers." % conf, flush=True)
        collectd = subprocess.Popen(["/usr/sbin/collectd", "-f", "-C", conf], start_new_session=True)
        try:
            collectd.wait()
        except KeyboardInterrupt:
            pass
        finally:
            _terminate(collectd, 10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
