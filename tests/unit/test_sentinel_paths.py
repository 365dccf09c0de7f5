"""The exit watcher writes and removes only where discovery reported a container (no root needed:
the refusals happen before any file is touched)."""

import pytest

from collectd_cgroups import sentinel

ALLOWED = ["/sys/fs/cgroup/memory/ccg-x/web", "/sys/fs/cgroup/pids/ccg-x/web"]


@pytest.mark.parametrize("path", ["/sys/fs/cgroup/memory/ccg-x/web", "/sys/fs/cgroup/pids/ccg-x/web/sub"])
def test_container_directories_and_below_are_allowed(path):
    assert sentinel._safe(path, ALLOWED) == path


@pytest.mark.parametrize("path", [
    "/sys/fs/cgroup/memory/ccg-x",                  # the parent of a container
    "/sys/fs/cgroup/memory/ccg-x/webby",            # a sibling sharing the prefix
    "/sys/fs/cgroup/memory/ccg-x/web/../other",     # climbing out
    "/sys/fs/cgroup/memory/ccg-x/web/./x",
    "sys/fs/cgroup/memory/ccg-x/web",               # relative
    "/sys/fs/cgroup/cpu/ccg-x/web",                 # a hierarchy discovery did not report it in
])
def test_anything_else_is_refused_before_it_is_touched(path, tmp_path):
    with pytest.raises(ValueError, match="not a container directory"):
        sentinel._safe(path, ALLOWED)
    with pytest.raises(ValueError):
        sentinel._write_pid(path, 1, ALLOWED)
    with pytest.raises(ValueError):
        sentinel.rmdir_tree(path, ALLOWED)
