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
        fields = [(f, spec) for _, f, spec, _ in string.Formatter().parse(fmt) if f is not None]
    except ValueError as e:
        raise ValueError("InstanceFormat %r: %s" % (fmt, e))
    for f, spec in fields:
        if f not in INSTANCE_FIELDS:
            raise ValueError("InstanceFormat %r: unknown field {%s}; known: %s, {label:KEY}"
                             % (fmt, f, ", ".join("{%s}" % x for x in INSTANCE_FIELDS if x != "label")))
        if f == "label" and not spec:
            raise ValueError("InstanceFormat %r: {label} needs the label's key: {label:KEY}" % fmt)
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

    A container keeps the instance it had as long as it is found under the same name: a new container
    whose formatted instance another live container holds gets ``<instance>-<short id>`` (and
    ``-<short id>-<n>`` after that), whatever order the next passes find them in.  "Holds" is judged on
    :func:`graphite_key`: ``eco.app.v1`` and ``eco_app_v1`` are one series in Graphite, so the second of
    them gets the suffix too (other writers keep the dots).

    Passes (:meth:`begin_pass`, :meth:`name`, :meth:`end_pass`) run on one thread; :meth:`instance_of`
    may be called from another (the exit watcher): it only reads dictionaries, which passes update item
    by item or replace whole.
    """

    def __init__(self, fmt=DEFAULT_INSTANCE_FORMAT, warn_once=None):
        check_instance_format(fmt)
        self.fmt = fmt
        self.warn_once = warn_once
        self._given = {}        # (container key, inode) -> (name, instance)
        self._holder = {}       # graphite_key(instance) -> key of the container holding it (a restart keeps it)
        self._taken = set()     # graphite_key() of the instances given in this pass
        self._pass = ()         # the containers of this pass
        self._live = None       # their keys, made only when a name's holder must be checked

    def begin_pass(self, containers=()):
        self._taken = set()
        self._pass = containers
        self._live = None

    def name(self, container):
        """The plugin_instance of ``container`` in this pass."""
        me = (container.key, container.inode)
        given = self._given.get(me)
        if given is not None and given[0] == container.name and graphite_key(given[1]) not in self._taken:
            instance = given[1]
        else:
            instance = self._unique(container, self._taken)
            self._given[me] = (container.name, instance)
            self._holder[graphite_key(instance)] = container.key
        self._taken.add(graphite_key(instance))
        return instance

    def end_pass(self, containers):
        """Forget the containers not found in this pass (``containers``: every container discovered)."""
        if len(self._given) > len(containers):
            live = set((c.key, c.inode) for c in containers)
            self._given = dict((k, v) for k, v in self._given.items() if k in live)
            self._holder = dict((graphite_key(v[1]), k[0]) for k, v in self._given.items())

    def instance_of(self, container):
        """The instance ``container``'s values went out under; for one never named yet, the one a pass
        would give it now."""
        me = (container.key, container.inode)
        given = self._given.get(me)
        if given is not None:
            return given[1]
        return self._unique(container, set(self._holder), log=False)

    def _holds(self, key):
        """Whether the container ``key`` is still in this pass: a Kubernetes restart (a new id under the
        same name) takes the name of the container it replaces, gone in the same interval."""
        if self._live is None:
            self._live = set(c.key for c in self._pass)
        return key in self._live

    def _unique(self, container, taken, log=True):
        instance = plugin_instance(container, self.fmt)
        key = graphite_key(instance)
        holder = self._holder.get(key)
        if key not in taken and (holder is None or holder == container.key or not self._holds(holder)):
            return instance
        unique = sanitize("%s-%s" % (instance, container.short_id))
        n = 2
        # Match ids are paths: short ids collide too.
        while (graphite_key(unique) in taken
               or self._holder.get(graphite_key(unique), container.key) != container.key):
            unique = sanitize("%s-%s-%d" % (instance, container.short_id, n))
            n += 1
        if log and self.warn_once is not None:
            self.warn_once((container.key, "dup"), "%s: identifier %s already taken, using %s"
                           % (container.cgroup, instance, unique))
        return unique


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
