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
INSTANCE_FIELDS = ("runtime", "name", "id", "short_id")

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
        fields = [f for _, f, _, _ in string.Formatter().parse(fmt) if f is not None]
    except ValueError as e:
        raise ValueError("InstanceFormat %r: %s" % (fmt, e))
    for f in fields:
        if f not in INSTANCE_FIELDS:
            raise ValueError("InstanceFormat %r: unknown field {%s}; known: %s"
                             % (fmt, f, ", ".join("{%s}" % x for x in INSTANCE_FIELDS)))
    if not fields:
        raise ValueError("InstanceFormat %r names no field, so every container would "
                         "get the same identifier" % fmt)


def plugin_instance(container, fmt=DEFAULT_INSTANCE_FORMAT):
    return sanitize(fmt.format(runtime=container.runtime, name=container.name,
                               id=container.id, short_id=container.short_id))


def data_sources(type_):
    return TYPES[type_]
