"""Parsers for the kernel's cgroup file formats (Documentation/admin-guide/cgroup-v2.rst,
"Interface Files"): bytes in, plain Python values out, no I/O.

Numbers are what the kernel writes for its counts: unsigned decimal ASCII digits, and in the int64 range
(collectd's DERIVE).  Anything else where a number is expected (``max``, a sign, ``2**70``, non-ASCII
digits, nothing) is a bad field.  A line or field that does not fit its format is skipped and described
in ``bad`` (when given) so that the caller can log it once; the rest of the file still counts.  Nothing
here raises, except :func:`single_value` and :func:`int_list`, the raising forms kept for callers that
want them.
"""

INT64_MAX = (1 << 63) - 1

# 18 digits are always below 2**63 (19 digits are 10**18 and more, 2**63 is 9223372036854775808).
_SAFE_DIGITS = 18


def number(token):
    """The value of ``token`` (bytes or str) if it is unsigned decimal ASCII digits in the int64 range,
    else None."""
    if token.isdigit() and token.isascii():
        if len(token) <= _SAFE_DIGITS:
            return int(token)
        value = int(token)
        if value <= INT64_MAX:
            return value
    return None


def what(token):
    """Why ``token`` is not a number, in words that do not change with a number's value."""
    if isinstance(token, str):
        token = token.encode("utf-8", "surrogateescape")
    token = token.strip()
    if not token:
        return "empty"
    if token.isdigit():
        return "a %d-digit number, beyond the int64 range" % len(token)
    if token[:1] in (b"-", b"+") and token[1:].isdigit():
        return "a signed number where the kernel writes a count"
    return "not a number: %r" % token[:24]


def bad_value(name, token):
    """The ``bad`` entry of a single-value file ``name`` holding ``token``."""
    return "malformed %s: %s" % (name, what(token))


def single(data, name, bad):
    """A single-value file (``memory.current``): its number, or None when it has none (then described
    in ``bad``: ``max``, empty, a sign, out of range...)."""
    token = data.strip()
    # bytes.isdigit() is true for ASCII digits only (str.isdigit() is not: hence number()'s isascii)
    if token.isdigit() and (len(token) <= _SAFE_DIGITS or int(token) <= INT64_MAX):
        return int(token)
    bad.append(bad_value(name, token))
    return None


def limit(data, name, bad):
    """A limit file (``memory.max``, ``pids.max``): its number; None for ``max`` (no limit, not bad) and
    for anything that is not a number (then described in ``bad``)."""
    if data.strip() == b"max":
        return None
    return single(data, name, bad)


def flat_keyed(data, bad=None, name=None):
    """``KEY VALUE`` lines (memory.stat, cpu.stat, cpuacct.stat, memory.events) -> {key: int}.  A line
    of another shape (or with a key that is not ASCII) goes to ``bad`` as it is (bytes); a line whose
    value is not a number as a str naming the key (and ``name``, the file's, when given)."""
    out = {}
    for line in data.split(b"\n"):
        if not line:
            continue
        parts = line.split()
        if len(parts) == 2:
            key, token = parts
            if key.isascii():
                if token.isdigit() and (len(token) <= _SAFE_DIGITS or int(token) <= INT64_MAX):
                    out[key.decode("ascii")] = int(token)
                elif bad is not None:
                    bad.append("malformed value of %s%s: %s" % (
                        key.decode("ascii"), " in " + name if name else "", what(token)))
                continue
        if bad is not None:
            bad.append(line)
    return out


def flat_split(data):
    """The fast form of :func:`flat_keyed` for files made only of ``KEY VALUE\\n`` lines, one space
    between key and value and the value in decimal digits in the int64 range (as the kernel writes them):
    (the keys, space-separated, as one bytes object; the values, ints, in order).  None for anything else
    (an empty line, tabs, a missing newline, a line of one or three fields, a sign, a number beyond
    2**63-1...): then use flat_keyed, which also says what is wrong."""
    tokens = data.replace(b"\n", b" \n ").split(b" ")
    n = len(tokens) // 3
    if len(tokens) != 3 * n + 1 or tokens[-1] or not n or tokens[2::3].count(b"\n") != n:
        return None
    values = tokens[1::3]
    if not b"".join(values).isdigit():
        return None         # a sign, a blank, a word: flat_keyed decides
    try:
        values = list(map(int, values))
    except ValueError:      # an empty value ("key \n")
        return None
    if max(values) > INT64_MAX:
        return None         # out of range: flat_keyed says which
    return b" ".join(tokens[0:-1:3]), values


class FlatPlans(object):
    """Parse plans of ``KEY VALUE`` files, by their keys: a file whose keys (and their order) were seen
    before is parsed from :func:`flat_split`'s tokens by position, without building a dict.

    ``build(stat)``: a function from ``{key: index of its value}`` (as :func:`flat_keyed` would build it,
    indexes for values) to a plan, any object; it runs once per set of keys.  Keys that flat_keyed would
    not read alike (not ASCII, empty, with tabs or other whitespace in them) get no plan.  The values
    given with a plan are ints from 0 to 2**63-1."""

    CAPACITY = 64

    def __init__(self, build):
        self.build = build
        self.plans = {}

    def get(self, data):
        """(plan, values: ints in range), or None when the file must be parsed the slow way."""
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
        split = keys.split(b" ")
        if not keys.isascii() or keys.split() != split:
            plan = False        # a key not ASCII, empty, or holding other whitespace: flat_keyed decides
        else:
            for i, key in enumerate(split):
                index[key.decode("ascii")] = i      # the last of two alike wins, as in flat_keyed
            plan = self.build(index)
        self.plans[keys] = plan
        return plan


def single_value(data):
    """A single integer, or None for ``max`` (no limit).  ValueError if it is not a number in the int64
    range (the raising form of :func:`limit`)."""
    value = data.strip()
    if value == b"max":
        return None
    n = number(value)
    if n is None:
        raise ValueError("%s" % what(value))
    return n


def int_list(data):
    """Space separated integers (cpuacct.usage_percpu).  ValueError if one is not a number (the raising
    form of :func:`numbers`)."""
    out = numbers(data)
    if None in out:
        raise ValueError("not a list of numbers: %r" % data[:40])
    return out


def numbers(data):
    """Space separated numbers (cpuacct.usage_percpu) -> [int, or None where a token is not a number]."""
    return [number(v) for v in data.split()]


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
