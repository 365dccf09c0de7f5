"""The public naming contract: collectd identifiers and their data sources.

plugin ``container``; plugin_instance from ``InstanceFormat`` (default
``{runtime}-{name}``); types only from collectd's stock types.db.
"""

import re
import string

try:
    # CPython's own SHA-1: hashlib would load OpenSSL's libcrypto for these short digests, 3.7 MiB of
    # collectd's resident memory.  Same digests either way.
    from _sha1 import sha1
except ImportError:     # another Python
    from hashlib import sha1

PLUGIN = "container"
DEFAULT_INSTANCE_FORMAT = "{runtime}-{name}"
INSTANCE_FIELDS = ("runtime", "name", "id", "short_id", "namespace", "pod", "container", "image", "label")

# collectd's DATA_MAX_NAME_LEN is 128 including the terminating NUL.
MAX_NAME = 127

# The stock types.db entries this plugin emits: type -> ((ds name, ds type), ...).
TYPES = {
    "cpu": (("value", "derive"),),
    "derive": (("value", "derive"),),
    "total_time_in_ms": (("value", "derive"),),
    "vmpage_action": (("value", "derive"),),
    "memory": (("value", "gauge"),),
    "count": (("value", "gauge"),),
    "disk_octets": (("read", "derive"), ("write", "derive")),
    "disk_ops": (("read", "derive"), ("write", "derive")),
    "disk_time": (("read", "derive"), ("write", "derive")),
    "total_bytes": (("value", "derive"),),
    "total_operations": (("value", "derive"),),
    "queue_length": (("value", "gauge"),),
    "if_octets": (("rx", "derive"), ("tx", "derive")),
    "if_packets": (("rx", "derive"), ("tx", "derive")),
    "if_errors": (("rx", "derive"), ("tx", "derive")),
    "if_dropped": (("rx", "derive"), ("tx", "derive")),
}

# Meta data key naming the host end of a container interface's veth pair.
HOST_INTERFACE_META = "host_interface"

# Characters kept as they are; anything else (whitespace, control characters,
# '/', quotes, non-ASCII) becomes '_'.  '-' and '.' are kept: collectd splits
# identifiers at the first '-' of "plugin-instance", and Graphite writers
# escape dots themselves.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:+@=,-]")


def graphite_key(instance):
    """What ``instance`` becomes in a Graphite path: write_graphite turns '.' (and whitespace and control
    characters, which :func:`sanitize` already turned into '_') into its EscapeCharacter, '_' by default.
    Two instances with the same key would merge into one series there, so Naming keeps keys apart."""
    return instance.replace(".", "_")


def sanitize(text, limit=MAX_NAME):
    """A valid collectd name part: no '/', control characters or whitespace,
    at most ``limit`` characters.  Long names keep their start and gain a
    short hash of the whole, so two long names stay apart."""
    clean = _UNSAFE.sub("_", text) or "_"
    if len(clean) > limit:
        digest = sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        clean = clean[:limit - 9] + "~" + digest
    return clean


def check_instance_format(fmt):
    """ValueError naming the bad field, for start-up configuration checks."""
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(fmt) if f is not None]
    except ValueError as e:
        raise ValueError("InstanceFormat %r: %s" % (fmt, e))
    for f, spec, conversion in fields:
        if f not in INSTANCE_FIELDS:
            raise ValueError("InstanceFormat %r: unknown field {%s}; known: %s, {label:KEY}"
                             % (fmt, f, ", ".join("{%s}" % x for x in INSTANCE_FIELDS if x != "label")))
        if f == "label" and not spec:
            raise ValueError("InstanceFormat %r: {label} needs the label's key: {label:KEY}" % fmt)
        # Fields are substituted as they are: a conversion ({name!r} quotes the name) or a format spec
        # ({name:>500} pads it past collectd's 127 characters) is a mistake, not a wish.
        if conversion:
            raise ValueError("InstanceFormat %r: {%s!%s}: conversions are not supported" % (fmt, f, conversion))
        if spec and f != "label":
            raise ValueError("InstanceFormat %r: {%s:%s}: format specs are not supported (only {label:KEY})"
                             % (fmt, f, spec))
    if not fields:
        raise ValueError("InstanceFormat %r names no field, so every container would "
                         "get the same identifier" % fmt)


class _Labels(object):
    """``{label:KEY}`` in an InstanceFormat: the container's label KEY, empty when it has none."""

    __slots__ = ("labels",)

    def __init__(self, labels):
        self.labels = labels

    def __format__(self, key):
        return self.labels.get(key, "")


_SEPARATORS = re.compile(r"^[\s_.:+@=,-]*$")


def plugin_instance(container, fmt=DEFAULT_INSTANCE_FORMAT):
    """``fmt`` filled in for ``container``; never empty (nor only separators): the short id then."""
    info = container.info
    text = fmt.format(runtime=container.runtime, name=container.name, id=container.id,
                      short_id=container.short_id, namespace=info.namespace or "", pod=info.pod or "",
                      container=info.container or "", image=info.image or "", label=_Labels(container.labels))
    if _SEPARATORS.match(text):
        text = container.short_id
    return sanitize(text)


def data_sources(type_):
    return TYPES[type_]


class Naming(object):
    """The one owner of plugin_instances: formats them (``InstanceFormat``), keeps them apart within a
    pass, and remembers what each container was called, so that its final figures (CollectOnExit) go out
    under the identifier of its live values.

    Which container gets which name is decided from the containers themselves and from what earlier
    passes gave, never from the order a pass finds them in, and a container keeps its instance as long
    as it is found under the same name.  "The same instance" is judged on :func:`graphite_key`:
    ``eco.app.v1`` and ``eco_app_v1`` are one series in Graphite, so they collide too (other writers keep
    the dots; each keeps its own spelling).  Among the containers new in a pass whose instances collide:

    1. a live container that already has the instance keeps it; nobody new gets it;
    2. else the container that had it last (same key: a cgroup re-created under the same path, e.g. a
       restart) takes it back; else the oldest of them takes it: the lowest inode of its cgroup
       directory (cgroupfs numbers directories in the order they are made), then the cgroup path.  A
       Kubernetes restart (a new id under the same name, the old container gone in the same interval)
       therefore takes the name;
    3. the others get ``<instance>-<short id>``; those whose short ids collide too (ids sharing their
       first 12 hex digits, Match ids, the same id under two parents) get, but for the oldest of them,
       ``<instance>-<short id>-<8 hex digits of the SHA-1 of the cgroup path>``, by the same rules 1-2;
       a collision beyond that (a hash collision, or a name made to look like another's suffix) adds
       ``-2``, ``-3``... in the order of age.

    Each collision is logged once per container.  A pass costs one dictionary look-up per container
    that keeps its name; the names of new containers cost a linear pass over them (plus sorting those
    that collide).

    Passes (:meth:`begin_pass`, :meth:`name`, :meth:`end_pass`) run on one thread; :meth:`instance_of`
    may be called from another (the exit watcher): it only looks items up in dictionaries, which passes
    update item by item or replace whole.
    """

    def __init__(self, fmt=DEFAULT_INSTANCE_FORMAT, warn_once=None):
        check_instance_format(fmt)
        self.fmt = fmt
        self.warn_once = warn_once
        self._given = {}        # (container key, inode) -> (name, instance, graphite_key(instance))
        self._holder = {}       # graphite_key(instance) -> key of the container given it
        self._new = {}          # (container key, inode) -> instance, for the containers new in this pass

    def begin_pass(self, containers=()):
        """Decide the names of this pass (``containers``: every container the pass may name)."""
        given = self._given
        fresh = []
        for c in containers:
            g = given.get((c.key, c.inode))
            if g is None or g[0] != c.name:
                fresh.append(c)
        self._new = {}
        if fresh:
            taken = {}          # graphite_key -> key of the live container holding it
            for c in containers:
                g = given.get((c.key, c.inode))
                if g is not None and g[0] == c.name:
                    if g[2] in taken:       # cannot happen (given names are unique), but never give it twice
                        fresh.append(c)
                    else:
                        taken[g[2]] = c.key
            self._new = self._assign(fresh, taken, log=True)

    def name(self, container):
        """The plugin_instance of ``container`` in this pass."""
        me = (container.key, container.inode)
        instance = self._new.get(me)
        if instance is not None:
            return instance
        given = self._given.get(me)
        if given is not None and given[0] == container.name:
            return given[1]
        # Not among the containers begin_pass was given: judged against every name given so far (and
        # still remembered), which _assign updates as it gives.
        return self._assign([container], self._holder, log=True)[me]

    def end_pass(self, containers):
        """Forget the containers not found in this pass (``containers``: every container discovered)."""
        self._new = {}
        if len(self._given) > len(containers) or len(self._holder) > len(self._given):
            live = set((c.key, c.inode) for c in containers)
            self._given = dict((k, v) for k, v in self._given.items() if k in live)
            self._holder = dict((v[2], k[0]) for k, v in self._given.items())

    def instance_of(self, container):
        """The instance ``container``'s values went out under; for one never named yet, the one a pass
        would give it now (without taking it)."""
        given = self._given.get((container.key, container.inode))
        if given is not None:
            return given[1]
        holder = self._holder
        base = plugin_instance(container, self.fmt)
        for candidate in self._candidates(container, base):
            owner = holder.get(graphite_key(candidate))
            if owner is None or owner == container.key:
                return candidate
        return candidate

    def _candidates(self, c, base):
        """The instances ``c`` may get, in the order of the rules (all but the counted ones)."""
        yield base
        short = c.short_id
        yield _suffixed(base, short)
        yield _suffixed(base, short, _path_hash(c.cgroup))

    def _assign(self, fresh, taken, log):
        """{(key, inode): instance} for the containers ``fresh``; ``taken``: graphite_key -> key of the
        container holding it in this pass (updated)."""
        holder = self._holder
        out = {}
        fmt = self.fmt
        # (container, base instance, its candidates) of those without a name yet, oldest first: the first
        # of the rivals for a name is the oldest.
        pending = [(c, base, self._candidates(c, base)) for c, base in
                   ((c, plugin_instance(c, fmt)) for c in fresh)]
        if len(pending) > 1:
            pending.sort(key=_rank)
        for _level in range(3):
            wanted = {}         # graphite_key(candidate) -> [(candidate, entry)]
            for entry in pending:
                candidate = next(entry[2])
                rivals = wanted.get(graphite_key(candidate))
                if rivals is None:
                    wanted[graphite_key(candidate)] = [(candidate, entry)]
                else:
                    rivals.append((candidate, entry))
            for key, rivals in wanted.items():
                owner = taken.get(key)
                last = owner if owner is not None else holder.get(key)
                winner = rivals[0] if owner is None else None
                if last is not None and (len(rivals) > 1 or owner is not None):
                    for pair in rivals:
                        if pair[1][0].key == last:
                            winner = pair
                            break
                if winner is not None:
                    self._give(winner[1], winner[0], key, out, taken, log)
            pending = [e for e in pending if (e[0].key, e[0].inode) not in out]
            if not pending:
                return out
        # Hash collisions, or names made to look like another's suffix: counted, oldest first.
        counters = {}
        for c, base, _ in pending:
            parts = (c.short_id, _path_hash(c.cgroup))
            n = counters.get((base,) + parts, 2)
            while True:
                candidate = _suffixed(base, *(parts + (str(n),)))
                n += 1
                key = graphite_key(candidate)
                if taken.get(key, c.key) == c.key:
                    break
            counters[(base,) + parts] = n
            self._give((c, base, None), candidate, key, out, taken, log)
        return out

    def _give(self, entry, instance, key, out, taken, log):
        c, base = entry[0], entry[1]
        me = (c.key, c.inode)
        out[me] = instance
        taken[key] = c.key
        self._given[me] = (c.name, instance, key)
        self._holder[key] = c.key
        if log and instance != base and self.warn_once is not None:
            self.warn_once((c.key, "dup"), "%s: identifier %s already taken, using %s"
                           % (c.cgroup, base, instance), cause="collision")


def _age(c):
    """Older first: the cgroup directory's inode (cgroupfs numbers them in the order they are made), then
    the cgroup path (then the key: paths are unique within a pass)."""
    return (c.inode is None, c.inode or 0, c.cgroup, c.key)


def _rank(entry):
    return _age(entry[0])


def _suffixed(base, *parts):
    """``base-part-...``: ``base`` is sanitized already and the parts are hex digits or numbers, so only the
    length is left to check."""
    text = "-".join((base,) + parts)
    return text if len(text) <= MAX_NAME else sanitize(text)


def _path_hash(path):
    return sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def meta_groups(samples, peers, meta):
    """A container's value lists grouped by the meta data each carries: ``[(meta, samples)]``.

    Every value carries ``meta``; an interface value whose veth's host end is known (``peers``:
    {type_instance: host interface}) carries ``meta`` plus :data:`HOST_INTERFACE_META`.  Without peers
    that is one group, the samples themselves (nothing is copied: this runs for every value of a pass).
    The plugin, the CLI's JSON and the final figures all dispatch through it."""
    if not peers:
        return [(meta, samples)]
    groups = []
    with_peer = {}
    current, run = meta, []
    for sample in samples:
        wanted = meta
        if sample[0].startswith("if_"):
            peer = peers.get(sample[1])
            if peer:
                wanted = with_peer.get(peer)
                if wanted is None:
                    wanted = with_peer[peer] = dict(meta, **{HOST_INTERFACE_META: peer})
        if wanted is not current:
            if run:
                groups.append((current, run))
            current, run = wanted, []
        run.append(sample)
    if run:
        groups.append((current, run))
    return groups
