"""The <Module "collectd_cgroups"> block -> Options.  No collectd import here, so
the CLI and the tests share it; every error names the option at fault."""

from .collector import Options

OPTIONS = ("Runtimes", "Match", "Ignore", "Metrics", "PerCPU", "InstanceFormat", "DockerDataRoot",
           "ContainersStorage", "HostRoot", "Interface", "IgnoreSelected", "IgnoreValue",
           "Interval", "SendMeta", "CollectOnExit", "KeepFilesOpen")


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
            or not isinstance(node.values[0], (int, float)) or node.values[0] <= 0:
        raise ConfigError("%s: expects a positive number, got %r" % (node.key, list(node.values)))
    return float(node.values[0])


def parse_config(node):
    """A <Module> block -> (Options, interval, send_meta).  ConfigError names the option."""
    opts = Options()
    interval = None
    send_meta = False
    for child in node.children:
        key = child.key.lower()
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
            opts.docker_root = _strings(child, 1, 1)[0].rstrip("/")
        elif key == "containersstorage":
            opts.storage_root = _strings(child, 1, 1)[0].rstrip("/")
        elif key == "hostroot":
            opts.root = _strings(child, 1, 1)[0]
        elif key == "interface":
            opts.interfaces.extend(_strings(child))
        elif key == "ignoreselected":
            opts.ignore_selected = _bool(child)
        elif key == "ignorevalue":
            opts.ignore_values.extend(_strings(child))
        elif key == "interval":
            interval = _number(child)
        elif key == "sendmeta":
            send_meta = _bool(child)
        elif key == "collectonexit":      # issue 6: read by plugin.Instance
            opts.collect_on_exit = _bool(child)
        elif key == "keepfilesopen":
            opts.keep_files = _auto_or_bool(child)
        else:
            raise ConfigError("%s: unknown option (known: %s)" % (child.key, ", ".join(OPTIONS)))
    try:
        opts.validate()
    except ValueError as e:
        raise ConfigError(str(e))
    return opts, interval, send_meta
