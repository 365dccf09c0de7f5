"""Number of tasks (processes and threads) and the tasks limit."""

from . import formats
from .base import Reader


class Pids(Reader):
    group = "pids"
    controller = "pids"
    files_v1 = files_v2 = ("pids.current", "pids.max")
    yields = {"pids.current": ("count-pids",), "pids.max": ("count-pids_limit",)}
    rare_files = frozenset(("pids.max",))
    unchanged_reuse = True

    def parse_v1(self, data, bad):
        out = []
        current = data.get("pids.current")
        if current is not None:
            current = formats.single(current, "pids.current", bad)
            if current is not None:
                out.append(("count", "pids", (current,)))
        limit = data.get("pids.max")
        if limit is not None:
            limit = formats.limit(limit, "pids.max", bad)
            if limit is not None:  # "max" means no limit: not dispatched
                out.append(("count", "pids_limit", (limit,)))
        return out

    parse_v2 = parse_v1
