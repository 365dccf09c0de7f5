"""The <Module "collectd_cgroups"> block -> Options.  No collectd import here, so
the CLI and the tests share it; every error names the option at fault."""

import dataclasses
import os

from . import containers, events, identifiers, network, readers
from .runtimes import oci

OPTIONS = ("Runtimes", "Match", "Ignore", "Metrics", "PerCPU", "InstanceFormat", "DockerDataRoot",
           "ContainersStorage", "HostRoot", "Interface", "IgnoreSelected", "IgnoreValue",
           "Interval", "SendMeta", "CollectOnExit", "KeepFilesOpen", "Pods", "MetaLabel", "ContainerdState",
           "ContainersRunRoot", "MaxInterfaces", "MaxDevices", "MaxValues", "Notify", "MemoryHighShare",
           "ThrottledShare")

# Options that may be given more than once (each adds to the list); any other one given twice is an error,
# since which of the two would win is not something a reader of the configuration can tell.
REPEATABLE = ("match", "ignore", "interface", "ignorevalue", "metalabel", "containerdstate")

# The shortest Interval: below it collectd would do little but start passes (0.0001 asks for 10,000 a
# second; a pass over 1000 containers takes about half a second of CPU).
MIN_INTERVAL = 0.1

# Bounds on what one container (or the host) can make the plugin dispatch, and their defaults: high enough
# for a Kubernetes node run in a container (kind, Docker-in-Docker), low enough that a container creating
# interfaces or devices by the thousand costs collectd little (see README "Limits").
MAX_INTERFACES = 256
MAX_DEVICES = 64
MAX_VALUES = 100000

# Meta data keys of the plugin's own: a MetaLabel may not take one.
META_KEYS = ("runtime", "container_id", "cgroup", "namespace", "pod", "container", "pod_uid", "image", "qos",
             "final", identifiers.HOST_INTERFACE_META)


# Metric groups: the cgroup readers' and the network namespaces'.
GROUPS = readers.GROUPS + ("network",)


@dataclasses.dataclass
class Options(object):
    """Everything an instance depends on, declared once with its default: the plugin fills it from a
    <Module> block (parse_config), the CLI from its arguments."""

    root: str = "/"                                     # HostRoot
    groups: tuple = GROUPS                              # Metrics
    per_cpu: bool = False                               # PerCPU
    instance_format: str = identifiers.DEFAULT_INSTANCE_FORMAT   # InstanceFormat
    match: list = dataclasses.field(default_factory=list)        # Match: [(regex string, runtime label)]
    ignore: list = dataclasses.field(default_factory=list)       # Ignore: [regex string]
    runtimes: tuple = containers.RUNTIMES               # Runtimes
    # None: from the daemons' own configuration under HostRoot, else the runtimes' defaults (daemon_config)
    docker_root: str = None                             # DockerDataRoot
    storage_root: str = None                            # ContainersStorage
    run_root: str = None                                # ContainersRunRoot (CRI-O's, podman's run state)
    containerd_states: tuple = oci.CONTAINERD_STATES    # ContainerdState (repeatable)
    pods: bool = True                                   # Pods: report each Kubernetes pod's own cgroup
    meta_labels: tuple = ()                             # MetaLabel (repeatable): labels sent as meta data
    interfaces: list = dataclasses.field(default_factory=list)   # Interface: names or /regex/
    ignore_selected: bool = False                       # IgnoreSelected
    # KeepFilesOpen: keep cgroup files open between passes and re-read them with pread (fs.KeepPolicy):
    # True, False, or "auto".
    keep_files: object = "auto"
    ignore_values: list = dataclasses.field(default_factory=list)  # IgnoreValue: patterns of "type-type_instance"
    interval: float = None                              # Interval (None: collectd's)
    send_meta: bool = False                             # SendMeta
    collect_on_exit: bool = False                       # CollectOnExit
    max_interfaces: int = MAX_INTERFACES                # MaxInterfaces: interfaces reported per container
    max_devices: int = MAX_DEVICES                      # MaxDevices: block devices reported per container
    max_values: int = MAX_VALUES                        # MaxValues: value lists dispatched per pass
    notify: tuple = events.DEFAULT_KINDS                # Notify: the events sent as notifications
    memory_high: float = events.MEMORY_HIGH             # MemoryHighShare: of the limit, for memoryhigh
    throttled_share: float = events.THROTTLED           # ThrottledShare: of a pass's periods, for throttled

    def __post_init__(self):
        self.groups = tuple(self.groups)
        self.runtimes = tuple(self.runtimes)
        self.containerd_states = tuple(self.containerd_states)
        self.meta_labels = tuple(self.meta_labels)
        self.match = list(self.match)
        self.ignore = list(self.ignore)
        self.interfaces = list(self.interfaces)
        self.ignore_values = list(self.ignore_values)
        self.notify = tuple(self.notify)

    def interface_select(self):
        """ValueError naming the Interface option when a /regex/ is bad."""
        return network.InterfaceSelect(self.interfaces, self.ignore_selected)

    def validate(self):
        """Raise ValueError naming the option at fault."""
        identifiers.check_instance_format(self.instance_format)
        containers.compile_patterns([p for p, _ in self.match], "Match")
        containers.compile_patterns(self.ignore, "Ignore")
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
        for key in self.meta_labels:
            if not key or key in META_KEYS:
                raise ValueError("MetaLabel: %r is %s" % (key, "empty" if not key else
                                 "a meta data key of the plugin's own (%s)" % ", ".join(META_KEYS)))
        for r in self.runtimes:
            if r not in containers.RUNTIMES:
                raise ValueError("Runtimes: unknown runtime %r; known: %s"
                                 % (r, ", ".join(containers.RUNTIMES)))
        if self.interval is not None and not self.interval >= MIN_INTERVAL:
            raise ValueError("Interval: %r is below %g s (a pass must end before the next one is due)"
                             % (self.interval, MIN_INTERVAL))
        for option, value, least in (("MaxInterfaces", self.max_interfaces, 1), ("MaxDevices", self.max_devices, 1),
                                     ("MaxValues", self.max_values, 100)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError("%s: expects a whole number of at least %d, got %r" % (option, least, value))
        for option, path in (("HostRoot", self.root), ("DockerDataRoot", self.docker_root),
                             ("ContainersStorage", self.storage_root), ("ContainersRunRoot", self.run_root)) \
                + tuple(("ContainerdState", p) for p in self.containerd_states):
            if path is not None and not path.startswith("/"):
                raise ValueError("%s: expects an absolute path, got %r" % (option, path))
        if not os.path.isdir(self.root):
            raise ValueError("HostRoot: %r is not a directory" % self.root)
        if not os.path.isdir(os.path.join(self.root, "proc")):
            raise ValueError("HostRoot: %r has no proc/ (mount the host's /proc there)" % self.root)


class ConfigError(ValueError):
    pass


def _strings(node, minimum=1, maximum=None):
    values = node.values
    if len(values) < minimum or (maximum is not None and len(values) > maximum) \
            or not all(isinstance(v, str) for v in values):
        want = "%d" % minimum if minimum == maximum else "%d or more" % minimum if maximum is None \
            else "%d to %d" % (minimum, maximum)
        raise ConfigError("%s: expects %s string argument(s), got %r" % (node.key, want, list(values)))
    return list(values)


def _bool(node):
    if len(node.values) != 1 or not isinstance(node.values[0], bool):
        raise ConfigError("%s: expects true or false, got %r" % (node.key, list(node.values)))
    return node.values[0]


def _auto_or_bool(node):
    values = node.values
    if len(values) == 1 and isinstance(values[0], str) and values[0].lower() == "auto":
        return "auto"
    if len(values) == 1 and isinstance(values[0], bool):
        return values[0]
    raise ConfigError("%s: expects auto, true or false, got %r" % (node.key, list(values)))


def _number(node):
    if len(node.values) != 1 or isinstance(node.values[0], bool) \
            or not isinstance(node.values[0], (int, float)) or not node.values[0] > 0:
        raise ConfigError("%s: expects a positive number, got %r" % (node.key, list(node.values)))
    return float(node.values[0])


def _notify(node):
    """``Notify "OOM" "Exit" ...`` (events.KINDS, any case), or ``Notify false``: none."""
    if len(node.values) == 1 and node.values[0] is False:
        return ()
    names = []
    for v in _strings(node):
        if v.lower() not in events.KINDS:
            raise ConfigError("%s: unknown event %r (known: %s; or false for none)"
                              % (node.key, v, ", ".join(events.KINDS)))
        names.append(v.lower())
    return tuple(names)


def _fraction(node):
    value = _number(node)
    if not value < 1:
        raise ConfigError("%s: expects a fraction between 0 and 1, got %r" % (node.key, list(node.values)))
    return value


def _whole(node):
    """A whole number (collectd hands every number to Python as a float)."""
    value = _number(node)
    if value != int(value) or value > 2 ** 31:
        raise ConfigError("%s: expects a whole number, got %r" % (node.key, list(node.values)))
    return int(value)


def _path(node):
    """An absolute path, without its trailing '/' (but "/" itself)."""
    path = _strings(node, 1, 1)[0]
    if not path.startswith("/"):
        raise ConfigError("%s: expects an absolute path, got %r" % (node.key, path))
    return path.rstrip("/") or "/"


def parse_config(node):
    """A <Module> block -> (Options, its interval, its send_meta).  ConfigError names the option."""
    opts = Options()
    states = None
    given = set()
    for child in node.children:
        key = child.key.lower()
        if key in given and key not in REPEATABLE:
            raise ConfigError("%s: given more than once (only %s may be repeated)" % (
                child.key, ", ".join(o for o in OPTIONS if o.lower() in REPEATABLE)))
        given.add(key)
        if key == "match":
            values = _strings(child, 1, 2)
            opts.match.append((values[0], values[1] if len(values) > 1 else "cgroup"))
        elif key == "ignore":
            opts.ignore.extend(_strings(child))
        elif key == "runtimes":
            opts.runtimes = tuple(_strings(child))
        elif key == "metrics":
            opts.groups = tuple(_strings(child))
        elif key == "percpu":
            opts.per_cpu = _bool(child)
        elif key == "instanceformat":
            opts.instance_format = _strings(child, 1, 1)[0]
        elif key == "dockerdataroot":
            opts.docker_root = _path(child)
        elif key == "containersstorage":
            opts.storage_root = _path(child)
        elif key == "hostroot":
            opts.root = _path(child)
        elif key == "interface":
            opts.interfaces.extend(_strings(child))
        elif key == "ignoreselected":
            opts.ignore_selected = _bool(child)
        elif key == "ignorevalue":
            opts.ignore_values.extend(_strings(child))
        elif key == "interval":
            opts.interval = _number(child)
        elif key == "sendmeta":
            opts.send_meta = _bool(child)
        elif key == "collectonexit":
            opts.collect_on_exit = _bool(child)
        elif key == "pods":
            opts.pods = _bool(child)
        elif key == "metalabel":
            opts.meta_labels += tuple(_strings(child))
        elif key == "containerdstate":
            states = states or []       # the first one replaces the defaults
            for v in _strings(child):
                if not v.startswith("/"):
                    raise ConfigError("%s: expects absolute paths, got %r" % (child.key, v))
                states.append(v.rstrip("/") or "/")
        elif key == "containersrunroot":
            opts.run_root = _path(child)
        elif key == "maxinterfaces":
            opts.max_interfaces = _whole(child)
        elif key == "maxdevices":
            opts.max_devices = _whole(child)
        elif key == "maxvalues":
            opts.max_values = _whole(child)
        elif key == "keepfilesopen":
            opts.keep_files = _auto_or_bool(child)
        elif key == "notify":
            opts.notify = _notify(child)
        elif key == "memoryhighshare":
            opts.memory_high = _fraction(child)
        elif key == "throttledshare":
            opts.throttled_share = _fraction(child)
        else:
            raise ConfigError("%s: unknown option (known: %s)" % (child.key, ", ".join(OPTIONS)))
    if states is not None:
        opts.containerd_states = tuple(states)
    try:
        opts.validate()
    except ValueError as e:
        raise ConfigError(str(e))
    return opts, opts.interval, opts.send_meta
