"""One read pass: containers x readers -> samples.

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
from . import devices, fs, hierarchy, identifiers, network, readers

HIERARCHY_REFRESH = 60.0   # seconds between re-reads of mountinfo

# keep_files="auto" (KeepFilesOpen): cgroup files are kept open between passes, and re-read with pread, when
# there are at least KEEP_FILES_FROM containers and at least KEEP_FILES_RATE of them per second of interval.
# A kept file saves its open and close every pass (about 100 us per container of 14 files, two thirds of
# the cost of reading them) and holds a descriptor and about 4.7 KiB of kernel memory (its seq_file
# buffer, charged to collectd's memory cgroup) while kept: 66 MiB at 1000 containers.  At 1000 containers
# and a 1-second interval that buys a tenth of a core; at collectd's default 10 s interval a hundredth.
# The rate keeps files where they save at least half a percent of a core: Interval 1 from 64 containers,
# Interval 10 from 500.  Keeping stops below three quarters of either threshold.
KEEP_FILES_FROM = 64
KEEP_FILES_RATE = 50.0

# Metric groups: the cgroup readers' and the network namespaces'.
GROUPS = readers.GROUPS + ("network",)


class Options(object):
    """Everything a pass depends on; the plugin fills it from collectd's
    config, the CLI from its arguments."""

    def __init__(self, root="/", groups=GROUPS, per_cpu=False,
                 instance_format=identifiers.DEFAULT_INSTANCE_FORMAT,
                 match=(), ignore=(), runtimes=containers_mod.RUNTIMES,
                 docker_root="/var/lib/docker", storage_root="/var/lib/containers/storage",
                 interfaces=(), ignore_selected=False, keep_files="auto", ignore_values=()):
        self.root = root
        self.groups = tuple(groups)
        self.per_cpu = per_cpu
        self.instance_format = instance_format
        self.match = list(match)      # [(regex string, runtime label)]
        self.ignore = list(ignore)    # [regex string]
        self.runtimes = tuple(runtimes)
        self.docker_root = docker_root
        self.storage_root = storage_root
        self.interfaces = list(interfaces)    # Interface options: names or /regex/
        self.ignore_selected = ignore_selected
        self.ignore_values = list(ignore_values)  # IgnoreValue options: shell patterns over "type-type_instance"
        # Keep cgroup files open between passes and re-read them with pread (see fs.KeptFiles): True,
        # False, or "auto" (see KEEP_FILES_FROM and Collector._kept_for).
        self.keep_files = keep_files

    def interface_select(self):
        """ValueError naming the Interface option when a /regex/ is bad."""
        return network.InterfaceSelect(self.interfaces, self.ignore_selected)

    def validate(self):
        """Raise ValueError naming the option at fault."""
        identifiers.check_instance_format(self.instance_format)
        containers_mod.compile_patterns([p for p, _ in self.match], "Match")
        containers_mod.compile_patterns(self.ignore, "Ignore")
        for label in (label for _, label in self.match):
            if identifiers.sanitize(label) != label:
                raise ValueError("Match: runtime label %r may use only letters, digits and _.:+@=,-" % label)
        for g in self.groups:
            if g not in GROUPS:
                raise ValueError("Metrics: unknown group %r; known: %s" % (g, ", ".join(GROUPS)))
        self.interface_select()
        for pattern in self.ignore_values:
            if not pattern or any(ch.isspace() for ch in pattern):
                raise ValueError("IgnoreValue: %r is not a pattern of identifiers such as memory-active_*"
                                 % (pattern,))
        for r in self.runtimes:
            if r not in containers_mod.RUNTIMES:
                raise ValueError("Runtimes: unknown runtime %r; known: %s"
                                 % (r, ", ".join(containers_mod.RUNTIMES)))


class ValueFilter(object):
    """IgnoreValue: leaves out the value lists whose ``type-type_instance`` (as the README's table names
    them: ``memory-active_file``, ``if_octets-eth0``) matches one of the shell patterns.  Each
    identifier is decided once; a pass then costs a dictionary lookup per value list."""

    def __init__(self, patterns):
        self._ignored = re.compile("|".join("(?:%s)" % fnmatch.translate(p) for p in patterns)).match
        self._decided = {}

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
    """Logs a message the first time its key is seen (bounded memory)."""

    def __init__(self, log, capacity=4096):
        self.log = log
        self.capacity = capacity
        self._seen = collections.OrderedDict()

    def __call__(self, key, message):
        if key in self._seen:
            return
        self._seen[key] = True
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        self.log(message)


# peers: {interface type_instance: name of the host end of its veth}
ContainerSamples = collections.namedtuple("ContainerSamples", "container instance samples peers")
ContainerSamples.__new__.__defaults__ = (None,)


class Collector(object):
    def __init__(self, options, warn=lambda msg: None, info=lambda msg: None, clock=time.monotonic):
        options.validate()
        self.options = options
        self.prefix = "" if options.root in ("", "/") else options.root.rstrip("/")
        self.warn_once = LogOnce(warn)
        self.info_once = LogOnce(info)
        self.clock = clock
        matcher = containers_mod.Matcher(
            match=[(r, label) for r, (_, label) in zip(
                containers_mod.compile_patterns([p for p, _ in options.match], "Match"), options.match)],
            ignore=containers_mod.compile_patterns(options.ignore, "Ignore"),
            runtimes=options.runtimes)
        self.discovery = containers_mod.Discovery(matcher, containers_mod.NameResolver(
            self.prefix, options.docker_root, options.storage_root, clock=clock))
        self.device_names = devices.DeviceNames(self.prefix, clock=clock)
        self.readers = readers.build(options.groups, per_cpu=options.per_cpu, device_names=self.device_names)
        # Built here, on the thread that starts the plugin: its network namespace is "home".
        self.network = network.NetworkReader(
            select=options.interface_select(), proc_root=self.prefix + "/proc",
            warn_once=self.warn_once, info_once=self.info_once) if "network" in options.groups else None
        self._hierarchies = None
        self._hierarchies_at = None
        self._absent = {}   # (container key, inode) -> names of files this cgroup does not have
        self._top_absent = {}   # mount path -> names of files its top directory does not have
        self._selected = {}     # (reader, mount path) -> files chosen with select_v1 for this pass
        self._plan = None       # during collect(): [(reader, mount path, v1?, files)] of this pass
        self._pids = {}         # (container key, inode) -> PID whose network namespace was read last
        self._instances = {}    # (container key, name) -> plugin_instance
        self.kept = fs.KeptFiles() if options.keep_files else None
        self.select_values = ValueFilter(options.ignore_values) if options.ignore_values else list
        self._keeping = options.keep_files is True     # "auto": decided each pass (see _kept_for)

    # -- discovery ---------------------------------------------------------

    def hierarchies(self):
        now = self.clock()
        if self._hierarchies is None or now - self._hierarchies_at >= HIERARCHY_REFRESH:
            try:
                self._hierarchies = hierarchy.load(self.options.root)
            except OSError as e:
                self.warn_once(("mountinfo", e.errno), "cannot read the cgroup mounts: %s" % e)
                if self._hierarchies is None:
                    self._hierarchies = hierarchy.Hierarchies([])
            self._hierarchies_at = now
            self._absent.clear()  # re-probe absent files now and then: kernels and cgroups change
            self._top_absent.clear()
        return self._hierarchies

    def discover(self):
        try:
            return self.discovery.discover(self.hierarchies())
        except Exception as e:  # a bug or a bizarre tree: report, never take collectd down
            self.warn_once(("discover", repr(e)), "container discovery failed: %r" % (e,))
            return []

    # -- reading -----------------------------------------------------------

    def read(self, container):
        """Samples of one container.  Raises fs.Gone when it vanished."""
        plan = self._plan
        if plan is None:
            plan = self._make_plan()
        # Keyed by inode too: a container re-created under the same path
        # (a restart) starts with a clean record.
        key = (container.key, container.inode)
        absent = self._absent.get(key)
        if absent is None:
            absent = self._absent[key] = set()
        dirs = container.dirs
        out = []
        for reader, mount_path, v1, files in plan:
            directory = dirs.get(mount_path)
            if directory is None:
                continue
            data = self._read_files(container.key, container.cgroup, directory, files, absent)
            if not data:
                continue
            bad = []
            try:
                samples = reader.parse_v1(data, bad) if v1 else reader.parse_v2(data, bad)
            except (ValueError, KeyError, IndexError) as e:
                self.warn_once((container.key, reader.group, "parse"),
                               "%s: malformed %s data, %s figures skipped: %s"
                               % (container.cgroup, "/".join(sorted(data)), reader.group, e))
                continue
            for entry in bad:
                self.warn_once((reader.group, entry),
                               "%s: skipped %s in %s data (seen first in %s)"
                               % (reader.group, _describe(entry), "/".join(sorted(data)), container.cgroup))
            out += samples
        return out

    def _make_plan(self):
        """What each container costs in this pass: [(reader, mount path, v1?, files)], files being tuples
        of alternatives (see readers.__init__); readers without a mount or files left out."""
        hier = self.hierarchies()
        plan = []
        for reader in self.readers:
            mount = hier.unified if reader.controller == "unified" else hier.mount_for(reader.controller)
            if mount is None:
                continue
            files = self._files(reader, mount)
            if files:
                plan.append((reader, mount.path, mount.version == 1,
                             tuple(e if isinstance(e, tuple) else (e,) for e in files)))
        return plan

    def files_read(self, container):
        """The files a pass reads for ``container`` now (its directory and name, alternatives resolved
        as the last pass found them): what the benchmark's C floor reads."""
        plan = self._plan if self._plan is not None else self._make_plan()
        absent = self._absent.get((container.key, container.inode), ())
        out = []
        for _, mount_path, _, files in plan:
            directory = container.dirs.get(mount_path)
            if directory is None:
                continue
            for names in files:
                for name in names:
                    if name not in absent:
                        out.append(directory + "/" + name)
                        break
        return out

    def _read_files(self, key, label, directory, files, absent):
        """{name: bytes} of ``files`` in ``directory``; each entry is a tuple of
        alternatives, of which the first one present is read."""
        data = {}
        read = fs.read_cgroup_file
        for entry in files:
            for name in entry:
                if name in absent:
                    continue
                try:
                    content = read(directory, name)
                except fs.Gone:
                    raise
                except OSError as e:
                    self.warn_once((key, name, e.errno),
                                   "%s: cannot read %s/%s: %s (skipped)" % (label, directory, name, e.strerror))
                    break          # there, but unreadable: not a reason to read an alternative
                if content is None:
                    absent.add(name)
                    continue
                data[name] = content
                break
        return data

    def _files(self, reader, mount):
        """The files ``reader`` reads in each container of ``mount`` (see readers.__init__)."""
        select = getattr(reader, "select_v1", None) if mount.version == 1 else None
        if select is None:
            return reader.files_v1 if mount.version == 1 else reader.files_v2
        key = (id(reader), mount.path)
        files = self._selected.get(key)
        if files is None:
            absent = self._top_absent.setdefault(mount.path, set())
            try:
                probe = self._read_files(("top", mount.path), mount.path, mount.path,
                                         [(name,) for name in reader.probe_v1], absent)
            except fs.Gone:
                probe = {}
            notes = []
            files = self._selected[key] = tuple(select(probe, notes))
            for note in notes:
                self.info_once((reader.group, mount.path, note), "%s: %s (%s)" % (reader.group, note, mount.path))
        return files

    def collect(self, containers=None, sink=None, interval=None):
        """One pass.  Returns [ContainerSamples]; never raises.

        ``interval``: seconds between passes, when the caller knows it (for KeepFilesOpen auto).

        With ``sink``, each container's ContainerSamples goes to ``sink`` as soon as it is read, and the
        number of containers delivered is returned instead: the plugin dispatches while the pass goes on
        (see plugin.DISPATCH_BATCH) and no pass is held in memory.  An exception from ``sink`` costs only
        that container."""
        self._selected.clear()   # readers with select_v1 look at their hierarchy again each pass
        if containers is None:
            containers = self.discover()
        if not isinstance(containers, list):
            containers = list(containers)
        kept = self._kept_for(len(containers), interval)
        if kept is not None:
            kept.begin()
        try:
            results = [] if sink is None else 0
            if containers:
                try:
                    self._plan = self._make_plan()
                except Exception as e:      # a bug or a bizarre tree: report, never take collectd down
                    self.warn_once(("plan", repr(e)), "cannot plan the pass: %r" % (e,))
                    return [] if sink is None else 0
                results = self._collect(containers, sink)
        finally:
            self._plan = None
            if kept is not None:
                kept.end()
        if kept is not None:
            self._retain_kept(containers)
        n = len(containers)
        if len(self._absent) > n or len(self._pids) > n:
            live = set((c.key, c.inode) for c in containers)
            for cache in (self._absent, self._pids):
                for key in [k for k in cache if k not in live]:
                    del cache[key]
        if len(self._instances) > n:
            live = set((c.key, c.name) for c in containers)
            for key in [k for k in self._instances if k not in live]:
                del self._instances[key]
        return results

    def _collect(self, containers, sink):
        results = [] if sink is None else 0
        instances = set()
        net = self.network.begin() if self.network is not None else None
        try:
            for container in containers:
                try:
                    samples = self.read(container)
                    peers = self._read_network(net, container, samples) if net is not None else None
                except fs.Gone:
                    self.info_once((container.key, "gone"), "%s: gone during the pass" % container.cgroup)
                    continue
                except Exception as e:  # contain any fault to this container
                    self.warn_once((container.key, "error", repr(e)),
                                   "%s: skipped, unexpected error: %r" % (container.cgroup, e))
                    continue
                if self.options.ignore_values:
                    samples = self.select_values(samples)
                if not samples:
                    continue
                item = self._named(container, samples, peers, instances)
                if sink is None:
                    results.append(item)
                    continue
                try:
                    sink(item)
                except Exception as e:
                    self.warn_once((container.key, "sink", repr(e)),
                                   "%s: values not dispatched: %r" % (container.cgroup, e))
                    continue
                results += 1
        finally:
            if net is not None:
                net.close()
        return results

    def _kept_for(self, n, interval=None):
        """The KeptFiles to use in a pass over ``n`` containers every ``interval`` seconds (None: unknown,
        the number of containers decides alone), or None (plain reads)."""
        kept = self.kept
        if kept is None:
            return None
        if self.options.keep_files == "auto":
            rate = n / interval if interval else float("inf")
            if not self._keeping and n >= KEEP_FILES_FROM and rate >= KEEP_FILES_RATE:
                self._keeping = True
            elif self._keeping and (n < KEEP_FILES_FROM * 3 // 4 or rate < KEEP_FILES_RATE * 3 / 4):
                self._keeping = False
                kept.close()
        return kept if self._keeping else None

    def _retain_kept(self, containers):
        """Close the kept files of containers no longer found (about 0.3 us per container)."""
        kept = self.kept
        if not kept.dirs:
            return
        hier = self._hierarchies
        live = set(m.path for m in hier.mounts) if hier is not None else set()
        for c in containers:
            live.update(c.dirs.values())
        if not live.issuperset(kept.dirs):
            kept.retain(live)

    def close(self):
        """Close the cgroup files kept open between passes (the next pass opens them again)."""
        if self.kept is not None:
            self.kept.close()

    def _read_network(self, net, container, samples):
        """Append the container's interface counters to ``samples``; its host veth peers, or None.

        The PID whose namespace is read is remembered from pass to pass (the network reader checks each
        time that it still belongs to the container); a new one is looked up in ``cgroup.procs`` when
        it has exited or left."""
        key = (container.key, container.inode)
        pid = self._pids.get(key)
        result = None
        if pid is not None:
            result = net.read(container.key, pid, container.cgroup, stale=network.STALE)
            if result is network.STALE:
                pid = None
        if pid is None:
            pid = network.first_pid(container.dirs)
            result = net.read(container.key, pid, container.cgroup) if pid else None
            if pid:
                self._pids[key] = pid
            else:
                self._pids.pop(key, None)
        if result is None:
            return None
        samples += result.samples
        return result.peers or None

    def _named(self, container, samples, peers, instances):
        """ContainerSamples under an identifier no other container took in this pass."""
        cache_key = (container.key, container.name)
        instance = self._instances.get(cache_key)
        if instance is None:
            instance = self._instances[cache_key] = identifiers.plugin_instance(
                container, self.options.instance_format)
        if instance in instances:
            unique = identifiers.sanitize("%s-%s" % (instance, container.short_id))
            n = 2
            while unique in instances:  # Match ids are paths: their short ids can collide too
                unique = identifiers.sanitize("%s-%s-%d" % (instance, container.short_id, n))
                n += 1
            self.warn_once((container.key, "dup"), "%s: identifier %s already taken in this pass, "
                           "using %s" % (container.cgroup, instance, unique))
            instance = unique
        instances.add(instance)
        return ContainerSamples(container, instance, samples, peers)


def _describe(entry):
    if isinstance(entry, bytes):
        return "malformed line %r" % entry[:80]
    return entry
