"""One read pass: discover -> plan -> read -> name.

The stages are modules of their own: hierarchy (the mounts, refreshed now and then), containers
(discovery and names), plan (what each container costs and reading it by the plan), network (the
namespaces), identifiers.Naming (plugin_instances, the one owner of naming).  The collector strings
them together for one pass and contains the faults.

Faults stay per container: a container that vanishes mid-pass, a file that
cannot be read or a line that cannot be parsed costs only that container (or
that file, or that line) for this pass, is logged once, and every other
container still flows.  Nothing here raises to the caller of ``collect``.
"""

import collections
import fnmatch
import re
import time

from . import containers as containers_mod
from . import config, devices, fs, hierarchy, identifiers, network, plan, readers
from .config import Options  # noqa: F401 (the pass's options, declared in config)
from .root import HostRoot
from .runtimes import daemon_config, known_ids, resolver

HIERARCHY_REFRESH = 60.0   # seconds between re-reads of mountinfo

GROUPS = config.GROUPS


_WILDCARD = re.compile(r"[*?\[]")


class ValueFilter(object):
    """IgnoreValue: leaves out the value lists whose ``type-type_instance`` (as the README's table names
    them: ``memory-active_file``, ``if_octets-eth0``) matches one of the shell patterns.  Each
    identifier is decided once; a pass then costs a dictionary lookup per value list."""

    def __init__(self, patterns):
        self.patterns = list(patterns)
        self._ignored = re.compile("|".join("(?:%s)" % fnmatch.translate(p) for p in patterns)).match
        self._decided = {}

    def wanted(self, identifier):
        """False when every value of ``identifier`` is left out: an identifier, or one ending in ``*``
        (an open set: "cpu-cpu*"), left out whole only by a pattern that is a plain prefix of it and a
        ``*`` ("cpu-*", "*"); anything less certain is wanted (its values then filtered one by one)."""
        if not identifier.endswith("*"):
            return not self._ignored(identifier)
        stem = identifier[:-1]
        return not any(p.endswith("*") and not _WILDCARD.search(p[:-1]) and stem.startswith(p[:-1])
                       for p in self.patterns)

    def __call__(self, samples):
        decided = self._decided
        out = []
        for sample in samples:
            key = sample[:2]
            keep = decided.get(key)
            if keep is None:
                if len(decided) >= 65536:       # device and interface names come and go
                    decided.clear()
                keep = decided[key] = not self._ignored("%s-%s" % key if key[1] else key[0])
            if keep:
                out.append(sample)
        return out


class LogOnce(object):
    """Logs a message the first time its key is seen, with bounded memory (the ``capacity`` last keys).

    A message about one container names its ``cause`` too ("gone", ("net", errno)...): each cause names
    at most ``per_cause`` containers per ``window`` seconds, so that a fault common to every container (a
    Python without cffi, a burst of short-lived containers) is a few lines, not one per container.  The
    first message of a cause after its window says how many were left out in it."""

    def __init__(self, log, capacity=4096, per_cause=5, window=600.0, clock=time.monotonic):
        self.log = log
        self.capacity = capacity
        self.per_cause = per_cause
        self.window = window
        self.clock = clock
        self._seen = collections.OrderedDict()
        self._causes = collections.OrderedDict()    # cause -> [window start, logged, left out]

    def __call__(self, key, message, cause=None):
        if key in self._seen:
            return
        self._seen[key] = True
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        if cause is not None:
            message = self._budget(cause, message)
            if message is None:
                return
        self.log(message)

    def _budget(self, cause, message):
        now = self.clock()
        state = self._causes.get(cause)
        if state is None or now - state[0] >= self.window:
            left_out = state[2] if state is not None else 0
            state = self._causes[cause] = [now, 0, 0]
            self._causes.move_to_end(cause)
            if len(self._causes) > self.capacity:
                self._causes.popitem(last=False)
            if left_out:
                message += " (and %d more like it left unsaid in the last %d s)" % (left_out, self.window)
        if state[1] >= self.per_cause:
            state[2] += 1
            return None
        state[1] += 1
        if state[1] == self.per_cause:
            message += " (more like it are left unsaid for %d s)" % self.window
        return message


#: The figures MaxValues never cuts: a container's CPU and memory core.  The rest of a container's values
#: come in reading order (CPU, memory detail, block I/O, pids, pressure, network), cut from the end.
CORE = frozenset((("cpu", "total"), ("cpu", "user"), ("cpu", "system"), ("memory", "usage"),
                  ("memory", "working_set"), ("memory", "limit"), ("count", "pids")))


def value_caps(counts, ceiling):
    """The most value lists each container may have so that ``counts`` (each container's, in the last
    pass) fit under ``ceiling``: None when they fit, else one cap for all, as high as it can be, so that
    the largest containers are cut first and the small ones not at all."""
    total = sum(counts)
    if total <= ceiling:
        return None
    room, left = ceiling, len(counts)
    for n in sorted(counts):
        if n * left > room:
            return room // left
        room -= n
        left -= 1
    return None     # pragma: no cover (total > ceiling leaves some container over the cap)


def cut(samples, limit):
    """``samples`` cut to ``limit`` value lists, the CORE ones always kept (so maybe more than ``limit``)."""
    core = [s for s in samples if s[:2] in CORE]
    room = limit - len(core)
    if room <= 0:
        return core
    out = []
    for sample in samples:
        if sample[:2] in CORE:
            out.append(sample)
        elif room > 0:
            out.append(sample)
            room -= 1
    return out


# peers: {interface type_instance: name of the host end of its veth}
ContainerSamples = collections.namedtuple("ContainerSamples", "container instance samples peers")
ContainerSamples.__new__.__defaults__ = (None,)


class Collector(object):
    """One instance's passes.  ``naming``: an identifiers.Naming to share (the exit watcher's collector
    uses the read callback's, so that final figures go out under the live values' names)."""

    def __init__(self, options, warn=lambda msg: None, info=lambda msg: None, clock=time.monotonic,
                 naming=None):
        options.validate()
        self.options = options
        self.root = HostRoot(options.root)
        self.warn_once = LogOnce(warn)
        self.info_once = LogOnce(info)
        self.clock = clock
        # The runtimes' state: the options, else the daemons' own configuration, else the defaults.
        self.state_roots = daemon_config.find(self.root, options.docker_root, options.storage_root, options.run_root)
        for problem in self.state_roots.problems:
            self.warn_once(("state roots", problem), "%s; the default is used" % problem)
        self.info_once("state roots", daemon_config.describe(self.state_roots))
        # A bare 64-hex cgroup under a parent of no known layout (--cgroup-parent): the runtime whose state has it.
        known = known_ids.KnownIds(self.root, self.state_roots.docker_root, options.containerd_states) \
            if {"docker", "containerd"} & set(options.runtimes) else None
        matcher = containers_mod.Matcher(
            match=[(r, label) for r, (_, label) in zip(
                containers_mod.compile_patterns([p for p, _ in options.match], "Match"), options.match)],
            ignore=containers_mod.compile_patterns(options.ignore, "Ignore"),
            runtimes=options.runtimes, known=known)
        self.discovery = containers_mod.Discovery(matcher, resolver.MetadataResolver(
            self.root, self.state_roots.docker_root, self.state_roots.storage_root, self.state_roots.run_root,
            options.containerd_states, clock=clock, warn_once=self.warn_once), pods=options.pods)
        self.device_names = devices.DeviceNames(self.root, clock=clock)
        self.readers = readers.build(options.groups, per_cpu=options.per_cpu, device_names=self.device_names,
                                     max_devices=options.max_devices)
        self.select_values = ValueFilter(options.ignore_values) if options.ignore_values else list
        self.planner = plan.Planner(self.readers, self.warn_once, self.info_once, clock=clock,
                                    wanted=self.select_values.wanted if options.ignore_values else None)
        self.tracks = plan.Tracks()
        self.naming = naming if naming is not None else identifiers.Naming(options.instance_format, self.warn_once)
        # Built here, on the thread that starts the plugin: its network namespace is "home".
        self.network = network.NetworkReader(
            select=options.interface_select(), proc_root=self.root.proc(), warn_once=self.warn_once,
            info_once=self.info_once, max_interfaces=options.max_interfaces,
            keep_pidfds=options.keep_files is not False) if "network" in options.groups else None
        self.keep = fs.KeepPolicy(options.keep_files)
        self._hierarchies = None
        self._hierarchies_at = None

    @property
    def kept(self):
        """The KeptFiles of this collector (None with KeepFilesOpen false)."""
        return self.keep.kept

    # -- discovery ---------------------------------------------------------

    def hierarchies(self):
        now = self.clock()
        if self._hierarchies is None or now - self._hierarchies_at >= HIERARCHY_REFRESH:
            try:
                self._hierarchies = hierarchy.load(self.root.path)
            except OSError as e:
                self.warn_once(("mountinfo", e.errno), "cannot read the cgroup mounts: %s" % e)
                if self._hierarchies is None:
                    self._hierarchies = hierarchy.Hierarchies([])
            self._hierarchies_at = now
            # re-probe absent files now and then: kernels and cgroups change
            self.tracks.forget_absent()
            self.planner.reset()
        return self._hierarchies

    def discover(self):
        try:
            return self.discovery.discover(self.hierarchies())
        except Exception as e:  # a bug or a bizarre tree: report, never take collectd down
            self.warn_once(("discover", repr(e)), "container discovery failed: %r" % (e,))
            return []

    # -- reading outside a pass ----------------------------------------------

    def plan(self, kept=None):
        """The plan of a pass now (readers with a v1 probe look at their hierarchy again)."""
        return self.planner.plan(self.hierarchies(), kept)

    def read(self, container):
        """Samples of one container, by a fresh plan.  Raises fs.Gone when it vanished."""
        return self.plan().read(container, self.tracks.get(container))

    def files_read(self, container):
        """The files a pass reads for ``container`` now (its directory and name, alternatives resolved
        as the last pass found them): what the benchmark's C floor reads."""
        return self.plan().files(container, self.tracks.peek(container))

    def read_final(self, container, pid=None):
        """Every figure of ``container`` once more, outside the passes (CollectOnExit): a fresh plan,
        nothing remembered, the network through the namespace of ``pid`` when given.  Returns
        (samples, peers), IgnoreValue not applied; raises fs.Gone."""
        samples = self.planner.plan(self.hierarchies(), whole=True).read(container, plan.Track())
        peers = None
        if self.network is not None and pid is not None:
            net = self.network.begin(partial=True)
            try:
                res = net.read(container.key, pid, container.cgroup)
            finally:
                net.close()
            if res is not None:
                samples.extend(res.samples)
                peers = res.peers or None
        return samples, peers

    # -- a pass --------------------------------------------------------------

    def collect(self, containers=None, sink=None, interval=None):
        """One pass.  Returns [ContainerSamples]; never raises.

        ``interval``: seconds between passes, when the caller knows it (for KeepFilesOpen auto).

        With ``sink``, each container's ContainerSamples goes to ``sink`` as soon as it is read, and the
        number of containers delivered is returned instead: the plugin dispatches while the pass goes on
        (see plugin.DISPATCH_BATCH) and no pass is held in memory.  An exception from ``sink`` costs only
        that container."""
        if containers is None:
            containers = self.discover()
        if not isinstance(containers, list):
            containers = list(containers)
        kept = self.keep.for_pass(len(containers), interval)
        results = [] if sink is None else 0
        pass_plan = None
        if containers:
            try:
                pass_plan = self.plan(kept)
            except Exception as e:      # a bug or a bizarre tree: report, never take collectd down
                self.warn_once(("plan", repr(e)), "cannot plan the pass: %r" % (e,))
            if pass_plan is not None:
                results = self._collect(containers, pass_plan, kept, sink)
        if pass_plan is None and self.network is not None:
            self.network.close()        # no container read: none of the kept pidfds is wanted any more
        if self.keep.holding():
            live = set(m.path for m in self._hierarchies.mounts) if self._hierarchies is not None else set()
            for c in containers:
                live.update(c.dirs.values())
            self.keep.retain(live)
        self.tracks.retain(containers)
        self.naming.end_pass(containers)
        return results

    def _collect(self, containers, pass_plan, kept, sink):
        results = [] if sink is None else 0
        naming = self.naming
        naming.begin_pass(containers)
        tracks = self.tracks
        read = self.read_container
        net = self.network.begin() if self.network is not None else None
        # MaxValues: a cap per container from what each had in the last pass, and the pass's own count
        # for containers new since (they may not take the pass over the ceiling either).
        ceiling = self.options.max_values
        cap = value_caps([tracks.get(c).values for c in containers], ceiling)
        dispatched = 0
        try:
            for container in containers:
                try:
                    track = tracks.get(container)
                    samples = read(container, track, pass_plan, kept)
                    # A pod's containers share its network namespace: reported once, under the pod.
                    # A container already at its cap does not have its network read at all.
                    peers = None
                    if net is not None and container.pod is None and (cap is None or len(samples) < cap):
                        peers = self._read_network(net, container, track, samples)
                        track.values = len(samples)
                    else:
                        track.values = max(track.values, len(samples))
                except fs.Gone:
                    self.info_once((container.key, "gone"), "%s: gone during the pass" % container.cgroup,
                                   cause="gone")
                    continue
                except Exception as e:  # contain any fault to this container
                    self.warn_once((container.key, "error", repr(e)),
                                   "%s: skipped, unexpected error: %r" % (container.cgroup, e),
                                   cause=("error", type(e).__name__))
                    continue
                if self.options.ignore_values:
                    samples = self.select_values(samples)
                if not samples:
                    continue
                limit = ceiling - dispatched if cap is None else min(cap, ceiling - dispatched)
                if len(samples) > limit:
                    samples = self._cut(container, samples, limit, cap)
                dispatched += len(samples)
                item = ContainerSamples(container, naming.name(container), samples, peers)
                if sink is None:
                    results.append(item)
                    continue
                try:
                    sink(item)
                except Exception as e:
                    self.warn_once((container.key, "sink", repr(e)),
                                   "%s: values not dispatched: %r" % (container.cgroup, e),
                                   cause=("sink", type(e).__name__))
                    continue
                results += 1
        finally:
            if net is not None:
                net.close()
        return results

    def _cut(self, container, samples, limit, cap):
        kept = cut(samples, limit)
        self.warn_once((container.key, "MaxValues"), "%s: MaxValues %d: the pass has more value lists, "
                       "this container's cut from %d to %d (its CPU and memory core kept)"
                       % (container.cgroup, self.options.max_values, len(samples), len(kept)),
                       cause=("limit", "MaxValues"))
        return kept

    def read_container(self, container, track, pass_plan, kept=None):
        """Samples of one container in a pass (raises fs.Gone): the plan's reading, a seam for tests."""
        return pass_plan.read(container, track, kept)

    def close(self):
        """Close the cgroup files and pidfds kept open between passes (the next pass opens them again) and
        the inotify descriptor on names' state (names are then looked at every other pass)."""
        self.keep.close()
        if self.network is not None:
            self.network.close()
        self.discovery.names.close()

    def _read_network(self, net, container, track, samples):
        """Append the container's interface counters to ``samples``; its host veth peers, or None.

        The PID whose namespace is read is remembered from pass to pass (the network reader checks each
        time that it still belongs to the container); a new one is looked up in ``cgroup.procs`` when
        it has exited or left."""
        pid = track.pid
        result = None
        if pid is not None:
            result = net.read(container.key, pid, container.cgroup, stale=network.STALE)
            if result is network.STALE:
                pid = None
        if pid is None:
            pid = containers_mod.first_pid(container.dirs)
            result = net.read(container.key, pid, container.cgroup) if pid else None
            track.pid = pid or None
        if result is None:
            return None
        samples += result.samples
        return result.peers or None
