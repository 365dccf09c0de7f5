"""A test double of the ``collectd`` module that collectd's python plugin provides.

Only what a plugin uses, with the behaviour of collectd 5.12's python.c:

- ``register_config/init/read/shutdown`` record their callbacks; ``run_*``
  call them the way collectd does (``callback(node)`` / ``callback()``, the
  user data appended only when one was registered);
- ``Values`` keeps host, plugin, plugin_instance, type, type_instance,
  values, interval, time and meta; ``dispatch(**overrides)`` checks the type
  against types.db (the data-source count and the 127-character name limit)
  and records a plain-dict snapshot in ``dispatched``;
- ``error/warning/notice/info/debug`` record ``(level, message)`` in ``logs``;
- ``Config(key, values, children)`` builds the nodes the config callback
  gets: ``key``, ``values`` (a tuple: str, float for numbers (collectd passes
  every number as a float), bool), ``children``, ``parent``.

Install with ``install()`` (puts a fresh module in ``sys.modules["collectd"]``)
before importing the plugin.
"""

import copy
import os
import sys
import types

TYPES_DB = "/usr/share/collectd/types.db"

# The stock types.db entries plugins commonly use, for machines without collectd.
_BUILTIN_TYPES = {
    "count": (("value", "GAUGE"),),
    "cpu": (("value", "DERIVE"),),
    "derive": (("value", "DERIVE"),),
    "gauge": (("value", "GAUGE"),),
    "memory": (("value", "GAUGE"),),
    "total_time_in_ms": (("value", "DERIVE"),),
    "vmpage_action": (("value", "DERIVE"),),
    "disk_octets": (("read", "DERIVE"), ("write", "DERIVE")),
    "disk_ops": (("read", "DERIVE"), ("write", "DERIVE")),
    "if_octets": (("rx", "DERIVE"), ("tx", "DERIVE")),
}

MAX_NAME = 127     # DATA_MAX_NAME_LEN (128) minus the NUL


def load_types(path=TYPES_DB):
    """{type: ((ds name, ds type), ...)} from a types.db, or the built-in subset."""
    if not os.path.exists(path):
        return dict(_BUILTIN_TYPES)
    types_ = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, _, rest = line.replace("\t", " ").partition(" ")
            sources = []
            for spec in rest.replace("\t", " ").split(","):
                spec = spec.strip()
                if spec:
                    ds_name, ds_type = spec.split(":")[:2]
                    sources.append((ds_name, ds_type))
            types_[name] = tuple(sources)
    return types_


class Config(object):
    """A config node as collectd hands it to a config callback."""

    def __init__(self, key, values=(), children=(), parent=None):
        self.key = key
        self.values = tuple(values)
        self.parent = parent
        self.children = tuple(children)
        for child in self.children:
            child.parent = self

    def __repr__(self):
        return "Config(%r, %r, %d children)" % (self.key, self.values, len(self.children))


def option(key, *values):
    """One option line: ``option("Interval", 10.0)``."""
    return Config(key, values)


def module_block(*children, name="collectd_cgroups"):
    """A ``<Module "name">`` block holding the given option nodes."""
    return Config("Module", (name,), children)


class DispatchError(RuntimeError):
    pass


class FakeCollectd(types.ModuleType):
    """The module object; one per test."""

    def __init__(self):
        super().__init__("collectd")
        self.types = load_types()
        self.configs = []      # (callback, data, name)
        self.inits = []
        self.reads = []        # dicts: callback, interval, data, name
        self.shutdowns = []
        self.dispatched = []   # dicts: host, plugin, plugin_instance, type, type_instance, values, interval, time, meta
        self.logs = []         # (level, message)
        self.dispatch_hook = None   # callable(record) run before recording; may raise
        self.Config = Config
        self.Values = _values_class(self)
        self.CollectdError = DispatchError

    # -- registration (signatures as in python.c)

    def register_config(self, callback, data=None, name=None):
        self.configs.append((callback, data, name))
        return name

    def register_init(self, callback, data=None, name=None):
        self.inits.append((callback, data, name))
        return name

    def register_read(self, callback, interval=None, data=None, name=None):
        if interval is not None and not interval > 0:
            raise ValueError("register_read: interval must be positive, got %r" % (interval,))
        self.reads.append({"callback": callback, "interval": interval, "data": data, "name": name})
        return name

    def register_shutdown(self, callback, data=None, name=None):
        self.shutdowns.append((callback, data, name))
        return name

    # -- logging

    def _logger(level):
        def log(self, message):
            if not isinstance(message, str):
                raise TypeError("collectd.%s() takes a str" % level)
            self.logs.append((level, message))
        log.__name__ = level
        return log

    error = _logger("error")
    warning = _logger("warning")
    notice = _logger("notice")
    info = _logger("info")
    debug = _logger("debug")
    del _logger

    # -- driving the plugin like collectd does

    @staticmethod
    def _call(callback, data, *args):
        return callback(*args) if data is None else callback(*(args + (data,)))

    def run_config(self, *blocks):
        """Hand each block to the config callback(s), as collectd does once per <Module> block."""
        for node in blocks:
            for callback, data, _ in self.configs:
                self._call(callback, data, node)

    def run_init(self):
        for callback, data, _ in self.inits:
            self._call(callback, data)

    def run_reads(self, times=1):
        for _ in range(times):
            for read in list(self.reads):
                self._call(read["callback"], read["data"])

    def run_shutdown(self):
        for callback, data, _ in self.shutdowns:
            self._call(callback, data)

    # -- inspection

    def messages(self, level=None, containing=""):
        return [m for lvl, m in self.logs if (level is None or lvl == level) and containing in m]


def _values_class(module):
    fields = ("host", "plugin", "plugin_instance", "type", "type_instance", "values", "interval", "time", "meta")

    class Values(object):
        def __init__(self, type=None, values=None, host="", plugin="", plugin_instance="",
                     type_instance="", time=0.0, interval=0.0, meta=None):
            self.host = host
            self.plugin = plugin
            self.plugin_instance = plugin_instance
            self.type = type or ""
            self.type_instance = type_instance
            self.values = values if values is not None else []
            self.time = time
            self.interval = interval
            self.meta = {} if meta is None else meta

        def dispatch(self, **overrides):
            unknown = set(overrides) - set(fields)
            if unknown:
                raise TypeError("dispatch() got unexpected keyword(s) %s" % sorted(unknown))
            record = {f: overrides.get(f, getattr(self, f)) for f in fields}
            _check(module, record)
            record["values"] = tuple(record["values"])
            record["meta"] = copy.deepcopy(record["meta"]) if record["meta"] else {}
            if module.dispatch_hook is not None:
                module.dispatch_hook(record)
            module.dispatched.append(record)

    return Values


def _check(module, record):
    """What collectd's Values.dispatch rejects."""
    if not record["plugin"]:
        raise DispatchError("Values.dispatch: plugin not set")
    if not record["type"]:
        raise DispatchError("Values.dispatch: type not set")
    sources = module.types.get(record["type"])
    if sources is None:
        raise DispatchError("Values.dispatch: type %s not found in types.db" % record["type"])
    values = record["values"]
    if not isinstance(values, (list, tuple)):
        raise TypeError("values must be list or tuple")
    if len(values) != len(sources):
        raise DispatchError("Values.dispatch: type %s needs %d values, got %d"
                            % (record["type"], len(sources), len(values)))
    for (ds_name, ds_type), value in zip(sources, values):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("value %r of %s is not a number" % (value, ds_name))
        if ds_type.upper() in ("DERIVE", "COUNTER", "ABSOLUTE") and not isinstance(value, int):
            raise TypeError("%s value %r of %s must be an int" % (ds_type, value, record["type"]))
        if ds_type.upper() == "DERIVE" and not -(1 << 63) <= value < (1 << 63):
            raise OverflowError("%r does not fit a DERIVE (int64)" % (value,))
    for name in ("host", "plugin", "plugin_instance", "type", "type_instance"):
        text = record[name]
        if not isinstance(text, str):
            raise TypeError("%s must be a str" % name)
        if len(text) > MAX_NAME:
            raise DispatchError("%s longer than %d characters: %r" % (name, MAX_NAME, text))
    meta = record["meta"]
    if meta is not None and not isinstance(meta, dict):
        raise TypeError("meta must be a dict")
    for key, value in (meta or {}).items():
        if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
            raise TypeError("meta %r: %r is not a str, int, float or bool" % (key, value))
    if not (isinstance(record["interval"], (int, float)) and record["interval"] >= 0):
        raise TypeError("interval must be a non-negative number")


def install():
    """A fresh fake in sys.modules["collectd"]; returns it (the caller restores sys.modules)."""
    module = FakeCollectd()
    sys.modules["collectd"] = module
    return module
