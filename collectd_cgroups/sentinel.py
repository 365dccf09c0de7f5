"""Final figures when a container exits: one tiny process of ours in each container's cgroups.

The technique: a *sentinel* process sits in every cgroup of a container (and in its network namespace
when network figures are wanted).  When the container's own processes are gone, the runtime's ``rmdir``
of those cgroups fails (they are still in use) and the namespace stays alive.  The watcher sees that the
sentinel is the last member, reads every metric group one more time, moves the sentinel back to each
hierarchy's root cgroup, removes the container's cgroup directories (children first) and kills the
sentinel.

The sentinel program is ``setpriv --pdeathsig KILL -- [nsenter --net=/proc/self/fd/N --] sleep infinity``
(util-linux and coreutils; no compiler, not a copy of collectd): about 110 KiB of private memory
(RSS 1.7 MiB, nearly all of it shared pages of libc and sleep).  ``--pdeathsig KILL`` makes it die
with the thread that started it: the watcher thread, i.e. with collectd, even under SIGKILL.  It is
started with ``cwd=/``, stdio on /dev/null and every other descriptor closed: it holds nothing on the
container's filesystem.  Its environment carries :data:`MARK` so that any watcher (another collectd
instance, the CLI) recognises sentinels as such: a container whose remaining members are all sentinels
has exited.

collectd sets SIGCHLD to SIG_IGN, so its children are reaped by the kernel and ``wait()`` fails with
ECHILD.  Nothing here depends on ``wait()``: a sentinel is watched and signalled through a pidfd
(``pidfd_open``; readable when the process is gone, immune to PID reuse), and reaped with
``waitid(P_PIDFD, WNOHANG)`` where the kernel has not done it already.

Watching: cgroup v1 has no notification when a cgroup empties down to one member, and on v2 the
sentinel itself keeps ``cgroup.events`` at ``populated 1``; so the watcher reads one ``cgroup.procs``
per container every :data:`POLL_INTERVAL` seconds (and polls the sentinels' pidfds meanwhile, which
reports a killed sentinel at once).  It discovers containers itself every :data:`DISCOVER_INTERVAL`
seconds, independently of the read interval: that bounds how short a container may live and still get
final figures.

This module does not import collectd: :class:`Watcher` hands :class:`Final` records to a callback.
"""

import collections
import errno
import json
import os
import select
import shutil
import signal
import subprocess
import threading
import time

from . import containers, fs, netns
from .events import lifetime_totals

MARK = "CCG_SENTINEL"
POLL_INTERVAL = 0.5         # seconds between two looks at each container's cgroup.procs
DISCOVER_INTERVAL = 1.0     # seconds between two discoveries of new containers
READY_TIMEOUT = 2.0         # seconds a new sentinel may take to enter the container's network namespace
KEEP_RECENT = 100           # finals kept for the CLI
STATE_FILE = "/run/collectd-cgroups/exited.json"

# Lifetime totals added to the final figures (all GAUGE, absolute values; see README "Final figures on exit").
TOTALS = (("duration", "final_cpu"), ("bytes", "final_disk_read"), ("bytes", "final_disk_write"),
          ("bytes", "final_net_rx"), ("bytes", "final_net_tx"))


def _tool(name):
    return shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin") or "/usr/bin/" + name


def sentinel_argv(netns_fd=None):
    argv = [_tool("setpriv"), "--pdeathsig", "KILL", "--"]
    if netns_fd is not None:
        argv += [_tool("nsenter"), "--net=/proc/self/fd/%d" % netns_fd, "--"]
    return argv + [_tool("sleep"), "infinity"]


def _safe(path, allowed):
    """``path``, when it is one of the directories in ``allowed`` or below one (with no ``..``): the
    watcher writes and removes only where discovery reported a container (and, to move its sentinel
    out, in the hierarchies' top directories)."""
    parts = path.split("/")
    if path.startswith("/") and ".." not in parts and "." not in parts[1:]:
        for top in allowed:
            if path == top or path.startswith(top + "/"):
                return path
    raise ValueError("refusing cgroup path %r: not a container directory discovery reported" % path)


def _write_pid(directory, pid, allowed):
    """Move ``pid`` into the cgroup ``directory`` (one of ``allowed``).  fs.Gone when it vanished."""
    path = _safe(directory, allowed) + "/cgroup.procs"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"%d" % pid)
        finally:
            os.close(fd)
    except OSError as e:
        fs.raise_if_gone(e, directory)
        raise


def is_sentinel(pid, proc_root="/proc"):
    """True when ``pid`` carries :data:`MARK` in its environment (a sentinel of any watcher)."""
    try:
        env = fs.read_bytes("%s/%d/environ" % (proc_root, pid))
    except OSError:
        return False
    return (b"\0" + env).find(b"\0" + MARK.encode() + b"=") >= 0


def rmdir_tree(directory, allowed, timeout=1.0):
    """rmdir ``directory`` (below one of ``allowed``) and the directories below it, children first,
    retrying EBUSY briefly (exiting tasks leave a cgroup a moment after they are gone).  True when it
    is gone."""
    _safe(directory, allowed)
    try:
        with os.scandir(directory) as entries:
            subdirs = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return True
    except OSError:
        subdirs = []
    for name in subdirs:
        rmdir_tree(directory + "/" + name, allowed, timeout)
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            os.rmdir(directory)
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class Sentinel(object):
    """One sentinel process: its pidfd, the directories it joined, where it is watched."""

    __slots__ = ("container", "pid", "pidfd", "popen", "joined", "primary", "netns", "started",
                 "not_sentinels", "released")

    def __init__(self, container, popen, pidfd):
        self.container = container
        self.popen = popen
        self.pid = popen.pid
        self.pidfd = pidfd
        self.joined = []            # [(hierarchy root, container directory)]
        self.primary = None         # the directory whose cgroup.procs is watched
        self.netns = False          # in the container's own network namespace
        self.started = time.time()
        self.not_sentinels = set()  # PIDs seen in the container that are not sentinels
        self.released = False

    def alive(self):
        """False once the process exited (a pidfd polls readable then, zombie or reaped)."""
        if self.pidfd is None:
            return False
        return not select.select([self.pidfd], [], [], 0)[0]

    def members(self):
        """PIDs in the watched cgroup.procs (fs.Gone when the directory vanished)."""
        data = fs.read_cgroup_file(self.primary, "cgroup.procs")
        return [int(x) for x in data.split()] if data else []

    def last_member(self, proc_root="/proc"):
        """True when every process left in the container's cgroups is a sentinel and ours is among them;
        None when ours is not there (moved away or killed)."""
        pids = self.members()
        if self.pid not in pids:
            return None
        for pid in pids:
            if pid == self.pid or pid in self.not_sentinels:
                if pid != self.pid:
                    return False
                continue
            if not is_sentinel(pid, proc_root):
                self.not_sentinels.add(pid)
                if len(self.not_sentinels) > 64:
                    self.not_sentinels.clear()
                return False
        return not _populated_below(self.primary, proc_root, 0)

    def kill_and_reap(self):
        """SIGKILL through the pidfd (never a reused PID), reap if the kernel did not; close the pidfd."""
        if self.pidfd is None:
            return
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 2.0
        while True:
            try:
                if select.select([self.pidfd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    break
            except InterruptedError:
                continue
            if time.monotonic() >= deadline:
                break
        try:
            os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:       # SIGCHLD ignored (collectd): the kernel reaped it
            pass
        except OSError:
            pass
        os.close(self.pidfd)
        self.pidfd = None
        # Tell subprocess it is done: it must never waitpid() a PID that may be reused.
        if self.popen.returncode is None:
            self.popen.returncode = -signal.SIGKILL


def _populated_below(directory, proc_root, depth):
    """True when a cgroup below ``directory`` holds a process that is not a sentinel."""
    if depth > 8:
        return False
    try:
        with os.scandir(directory) as entries:
            subdirs = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return False
    for sub in subdirs:
        try:
            data = fs.read_cgroup_file(sub, "cgroup.procs")
        except fs.Gone:
            continue
        if data and any(not is_sentinel(int(p), proc_root) for p in data.split()):
            return True
        if _populated_below(sub, proc_root, depth + 1):
            return True
    return False


class Final(object):
    """The last figures of one container."""

    __slots__ = ("container", "instance", "samples", "peers", "totals", "time", "watched_since", "removed")

    def __init__(self, container, instance, samples, peers, totals, when, watched_since):
        self.container = container
        self.instance = instance
        self.samples = samples      # [(type, type_instance, values)] as a pass gives them
        self.peers = peers
        self.totals = totals        # [(type, type_instance, (value,))], see TOTALS
        self.time = when
        self.watched_since = watched_since
        self.removed = None         # True when the container's cgroup directories were removed

    def value_lists(self):
        """Everything to dispatch: the samples then the totals, as (type, type_instance, values)."""
        return list(self.samples) + list(self.totals)

    def to_json(self):
        return {"instance": self.instance, "runtime": self.container.runtime, "id": self.container.id,
                "name": self.container.name, "cgroup": self.container.cgroup, "time": round(self.time, 3),
                "watched_since": round(self.watched_since, 3), "removed": self.removed,
                "totals": {ti: v[0] for _, ti, v in self.totals},
                "values": [[t, ti, list(v)] for t, ti, v in self.samples]}


class Watcher(object):
    """Places sentinels in the containers ``collector`` discovers and reports their finals.

    ``collector``: a :class:`collectd_cgroups.collector.Collector` of the watcher's own (built on a
    thread in the host's network namespace; never shared with the read callback).  ``on_final(final)``
    is called on the watcher thread for each container that exited.  ``warn``/``info``: loggers.
    ``state_file``: where the recent finals are written as JSON for the CLI (None: nowhere).

    Everything happens on the watcher thread (:meth:`start` / :meth:`stop`): PR_SET_PDEATHSIG fires
    when the *thread* that started a sentinel exits, so sentinels live exactly as long as it does.
    """

    def __init__(self, collector, on_final=None, warn=lambda m: None, info=lambda m: None,
                 poll_interval=POLL_INTERVAL, discover_interval=DISCOVER_INTERVAL, state_file=None,
                 keep=KEEP_RECENT):
        self.collector = collector
        self.on_final = on_final
        self.warn = warn
        self.info = info
        self.poll_interval = poll_interval
        self.discover_interval = discover_interval
        self.state_file = state_file
        self.proc_root = collector.root.proc()
        self.network = "network" in collector.options.groups
        self.sentinels = {}                 # (container key, inode) -> Sentinel
        self.skip = collections.OrderedDict()   # (key, inode) done or lost: no new sentinel
        self.recent = collections.deque(maxlen=keep)
        self.lost = 0
        self.placed = 0
        self._stop = threading.Event()
        self._thread = None
        self._home = netns.thread_ns_ident() if self.network else None
        self._next_discover = 0.0

    # -- life cycle --------------------------------------------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self.run, name="ccg-sentinels", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=15.0):
        """Stop the thread; every sentinel leaves its cgroups and exits before this returns."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run(self):
        try:
            while not self._stop.is_set():
                try:
                    self.step()
                except Exception as e:  # never let the thread die with sentinels out there
                    self.warn("sentinel watcher: unexpected error: %r" % (e,))
                    self._stop.wait(self.poll_interval)
        finally:
            self.release_all()

    # -- one round -----------------------------------------------------------------------------------

    def step(self, timeout=None):
        """Discover when due, wait up to ``timeout`` (default: the poll interval) for a sentinel to die,
        then look at every container once."""
        now = time.monotonic()
        if now >= self._next_discover:
            self._next_discover = now + self.discover_interval
            self.adopt(self.collector.discover())
        self._wait(self.poll_interval if timeout is None else timeout)
        # A pod's containers before the pod: when they all end in the same round, theirs go out (and their
        # cgroups are removed) first, then the pod's, whose removal needs its containers' gone.
        for key, s in sorted(self.sentinels.items(), key=lambda item: item[1].container.runtime == containers.POD):
            if self._stop.is_set():
                break
            self.check(key, s)

    def _wait(self, timeout):
        """Sleep ``timeout`` seconds, waking early when a sentinel dies or on stop."""
        fds = [s.pidfd for s in self.sentinels.values() if s.pidfd is not None]
        if not fds:
            self._stop.wait(timeout)
            return
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if poller.poll(int(min(left, 0.25) * 1000) + 1):
                return

    def check(self, key, s):
        c = s.container
        if not s.alive():
            self._lost(key, s, "its sentinel was killed (a runtime that kills every process in the cgroup on "
                               "stop, such as crun): no final figures for it")
            return
        try:
            last = s.last_member(self.proc_root)
        except fs.Gone:
            last = None
        except OSError as e:
            self.warn("%s: cannot read %s/cgroup.procs: %s" % (c.cgroup, s.primary, e))
            return
        if last is None:
            self._lost(key, s, "its sentinel left the container's cgroups (moved away): no final figures for it")
        elif last:
            self.finish(key, s)

    def _lost(self, key, s, why):
        self.lost += 1
        self.info("%s: %s" % (s.container.cgroup, why))
        self.release(s, remove=False)
        del self.sentinels[key]
        self._skip(key)

    def _skip(self, key):
        self.skip[key] = True
        while len(self.skip) > 4096:
            self.skip.popitem(last=False)

    # -- placing -------------------------------------------------------------------------------------

    def adopt(self, containers):
        """Give a sentinel to each container that has none yet (and has a process)."""
        live = set()
        held = {s.container.key: s for s in self.sentinels.values()}
        for c in containers:
            key = (c.key, c.inode)
            live.add(key)
            s = held.get(c.key)
            if s is not None:
                # Already watched (a live sentinel holds its cgroups: the path cannot have been re-created).
                # Runtimes create a container's hierarchies one after the other: an earlier discovery may
                # have seen only some of them (and keyed the container by another directory's inode).
                self._join_more(s, c)
                continue
            if key in self.sentinels or key in self.skip:
                continue
            try:
                s = self.place(c)
            except OSError as e:
                if e.errno == errno.EBUSY and c.runtime == containers.POD:
                    # cgroup v2: a pod's cgroup has controllers enabled for its containers, so no process
                    # may join it ("no internal processes"); its containers' final figures still come.
                    self.info("%s: no final figures for the pod itself on cgroup v2 (its containers get "
                              "theirs)" % c.cgroup)
                else:
                    self.warn("%s: no sentinel placed: %s" % (c.cgroup, e))
                self._skip(key)
                continue
            except Exception as e:
                self.warn("%s: no sentinel placed: %s" % (c.cgroup, e))
                self._skip(key)
                continue
            if s is not None:
                self.sentinels[key] = s
        return live

    def place(self, c):
        """Start a sentinel for container ``c`` and move it into the container's cgroups.
        None when the container has no process (yet, or any more)."""
        try:
            pid = containers.first_pid(c.dirs)
        except fs.Gone:
            return None
        if pid is None:
            return None
        handle = None
        if self.network:
            try:
                handle = netns.open_netns(pid, c.cgroup, self.proc_root)
            except fs.Gone:
                return None
            # Any other OSError propagates: no sentinel rather than one outside the container's namespace
            # (the read passes might then take its PID for the container's and read the host's network).
            if handle is not None and handle.ident == self._home:
                handle.close()          # the host's namespace: nothing to hold
                handle = None
        try:
            popen = subprocess.Popen(
                sentinel_argv(handle.fd if handle else None), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
                pass_fds=(handle.fd,) if handle else (), cwd="/", start_new_session=True,
                env={"PATH": "/usr/bin:/bin", MARK: str(os.getpid())})
            target = handle.ident if handle else None
        finally:
            if handle is not None:
                handle.close()
        try:
            pidfd = os.pidfd_open(popen.pid)
        except OSError:
            popen.returncode = -signal.SIGKILL
            raise
        s = Sentinel(c, popen, pidfd)
        try:
            if target is not None:
                self._wait_netns(s, target)
                s.netns = True
            hier = self.collector.hierarchies()
            unified = hier.unified.path if hier.unified is not None else None
            for root, directory in c.dirs.items():
                try:
                    _write_pid(directory, s.pid, c.dirs.values())
                except fs.Gone:
                    raise                               # exited before we got there
                except OSError:
                    if root == unified and hier.mode == "hybrid":
                        continue                       # a controller-less v2 mount: not needed to stay
                    raise
                s.joined.append((root, directory))
            if not s.joined:
                raise OSError(errno.EINVAL, "joined no cgroup")
            s.primary = _primary(c.dirs, hier, [d for _, d in s.joined])
        except fs.Gone:
            self.release(s, remove=False)
            return None
        except BaseException:
            self.release(s, remove=False)
            raise
        self.placed += 1
        return s

    def _join_more(self, s, c):
        """Join the directories of ``c`` that sentinel ``s`` has not joined yet (they appeared since)."""
        new = [(root, d) for root, d in c.dirs.items() if root not in s.container.dirs]
        if not new or s.released:
            return
        for root, directory in new:
            try:
                _write_pid(directory, s.pid, c.dirs.values())
            except (OSError, fs.Gone):
                continue        # gone meanwhile, or a controller-less v2 mount: as in place()
            s.joined.append((root, directory))
        s.container.dirs = dict(s.container.dirs, **c.dirs)
        s.primary = _primary(s.container.dirs, self.collector.hierarchies(), [d for _, d in s.joined])

    def _wait_netns(self, s, target):
        deadline = time.monotonic() + READY_TIMEOUT
        path = "%s/%d/ns/net" % (self.proc_root, s.pid)
        while True:
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == target:
                    return
            except OSError:
                pass
            if not s.alive():
                raise OSError(errno.ESRCH, "sentinel exited before entering the network namespace "
                                           "(nsenter failed?)")
            if time.monotonic() >= deadline:
                raise OSError(errno.ETIMEDOUT, "sentinel did not enter the network namespace")
            time.sleep(0.002)

    # -- the end of a container ----------------------------------------------------------------------

    def finish(self, key, s):
        """The container exited: read, report, release, remove."""
        final = None
        try:
            final = self.read_final(s)
        except Exception as e:
            self.warn("%s: final figures failed: %r" % (s.container.cgroup, e))
        removed = self.release(s, remove=True)
        del self.sentinels[key]
        self._skip(key)
        if final is None:
            return None
        final.removed = removed
        self.recent.append(final)
        if self.on_final is not None:
            try:
                self.on_final(final)
            except Exception as e:
                self.warn("%s: dispatching the final figures failed: %r" % (s.container.cgroup, e))
        self._write_state()
        return final

    def read_final(self, s):
        c = s.container
        col = self.collector
        # Only the directories the sentinel holds are sure to exist: the runtime may have removed the others.
        held = c.copy(dict(s.joined))
        # A pod's container shares the pod's network namespace: its figures are the pod's.
        samples, peers = col.read_final(held, s.pid if s.netns and c.pod is None else None)
        # The name its live values had (the naming is the read callback's), not one made up again.
        instance = col.naming.instance_of(c)
        # The totals come from every figure; IgnoreValue applies to what is dispatched.
        return Final(c, instance, col.select_values(samples), peers, col.select_values(lifetime_totals(samples)),
                     time.time(), s.started)

    def release(self, s, remove):
        """Move the sentinel back to each hierarchy's root cgroup, kill it; with ``remove``, rmdir the
        container's cgroup directories.  Returns True when they are all gone."""
        if s.released:
            return None
        s.released = True
        roots = [root for root, _ in s.joined]
        for root in roots:
            try:
                _write_pid(root, s.pid, roots)
            except (OSError, fs.Gone):
                pass    # gone already (ESRCH), or the root refuses: killing it below frees the cgroup anyway
        removed = None
        if remove:
            removed = True
            dirs = set(s.container.dirs.values())
            for directory in dirs:
                if not rmdir_tree(directory, dirs):
                    removed = False
        s.kill_and_reap()
        return removed

    def release_all(self):
        """On stop: containers that exited meanwhile are removed, every sentinel leaves and exits."""
        for key, s in list(self.sentinels.items()):
            try:
                done = s.alive() and s.last_member(self.proc_root)
            except Exception:
                done = False
            try:
                self.release(s, remove=bool(done))
            except Exception as e:
                self.warn("%s: releasing the sentinel failed: %r" % (s.container.cgroup, e))
                try:
                    s.kill_and_reap()
                except Exception:
                    pass
        self.sentinels.clear()

    def _write_state(self):
        if not self.state_file:
            return
        try:
            write_state(self.state_file, list(self.recent))
        except OSError as e:
            self.warn("cannot write %s: %s" % (self.state_file, e))


def _primary(dirs, hier, joined):
    """The directory to watch: memory's, else pids', else the first one joined."""
    for controller in ("memory", "pids", "cpuacct", "cpu"):
        m = hier.mount_for(controller)
        if m is not None and dirs.get(m.path) in joined:
            return dirs[m.path]
    return joined[0]


def write_state(path, finals):
    """The recent finals as JSON (atomically: written aside, then renamed)."""
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump({"written": round(time.time(), 3), "exited": [x.to_json() for x in finals]}, f)
    os.rename(tmp, path)


def read_state(path=STATE_FILE):
    with open(path) as f:
        return json.load(f).get("exited", [])
