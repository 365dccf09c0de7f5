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


def flat_split(data):
    """The fast form of :func:`flat_keyed` for files made only of ``KEY VALUE\\n`` lines, one space
    between key and value and the value in decimal digits (as the kernel writes them): (the keys,
    space-separated, as one bytes object; the value tokens, in order).  None for anything else (an empty
    line, tabs, a missing newline, a line of one or three fields, a sign...): then use flat_keyed, which
    also says what is wrong."""
    tokens = data.replace(b"\n", b" \n ").split(b" ")
    n = len(tokens) // 3
    if len(tokens) != 3 * n + 1 or tokens[-1] or not n or tokens[2::3].count(b"\n") != n:
        return None
    values = tokens[1::3]
    if not b"".join(values).isdigit():
        return None         # a sign, a blank, a word: flat_keyed decides
    return b" ".join(tokens[0:-1:3]), values


class FlatPlans(object):
    """Parse plans of ``KEY VALUE`` files, by their keys: a file whose keys (and their order) were seen
    before is parsed from :func:`flat_split`'s tokens by position, without building a dict.

    ``build(stat)``: a function from ``{key: index of its value}`` (as :func:`flat_keyed` would build it,
    indexes for values) to a plan, any object; it runs once per set of keys."""

    CAPACITY = 64

    def __init__(self, build):
        self.build = build
        self.plans = {}

    def get(self, data):
        """(plan, value tokens), or None when the file must be parsed the slow way."""
        fast = flat_split(data)
        if fast is None:
            return None
        keys, values = fast
        plan = self.plans.get(keys)
        if plan is None:
            plan = self._new(keys)
        return (plan, values) if plan is not False else None

    def _new(self, keys):
        if len(self.plans) >= self.CAPACITY:
            self.plans.clear()
        index = {}
        try:
            for i, key in enumerate(keys.split(b" ")):
                index[key.decode("ascii")] = i      # the last of two alike wins, as in flat_keyed
        except UnicodeDecodeError:
            plan = False                            # flat_keyed reports such lines as malformed
        else:
            plan = self.build(index)
        self.plans[keys] = plan
        return plan


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
