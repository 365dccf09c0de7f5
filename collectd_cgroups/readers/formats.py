"""Parsers for the kernel's cgroup file formats (Documentation/admin-guide/cgroup-v2.rst,
"Interface Files"): bytes in, plain Python values out, no I/O.

A line that does not fit its format is skipped and appended to ``bad`` (when
given) so that the caller can log it once; the rest of the file still counts.
"""


def flat_keyed(data, bad=None):
    """``KEY VALUE`` lines (memory.stat, cpu.stat, cpuacct.stat, memory.events) -> {key: int}."""
    out = {}
    for line in data.split(b"\n"):
        if not line:
            continue
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0].decode("ascii")] = int(parts[1])
                continue
            except (ValueError, UnicodeDecodeError):
                pass
        if bad is not None:
            bad.append(line)
    return out


def single_value(data):
    """A single integer, or None for ``max`` (no limit). ValueError if malformed."""
    value = data.strip()
    if value == b"max":
        return None
    return int(value)


def int_list(data):
    """Space separated integers (cpuacct.usage_percpu). ValueError if malformed."""
    return [int(v) for v in data.split()]


def nested_keyed(data, bad=None):
    """``NAME KEY=VALUE ...`` lines (the *.pressure files) -> {name: {key: str}}."""
    out = {}
    for line in data.split(b"\n"):
        if not line:
            continue
        parts = line.split()
        try:
            fields = {}
            for kv in parts[1:]:
                key, value = kv.split(b"=", 1)
                fields[key.decode("ascii")] = value.decode("ascii")
            out[parts[0].decode("ascii")] = fields
        except (ValueError, IndexError, UnicodeDecodeError):
            if bad is not None:
                bad.append(line)
    return out
