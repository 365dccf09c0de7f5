"""``--src DIR``: the checkout whose collectd_cgroups a benchmark or the soak measures, looked at in
``sys.argv`` before anything imports collectd_cgroups (argparse comes later, for the help text).
Standard library only: scripts import it before their own path is set up."""

import os


def src_checkout(argv, default):
    for i, arg in enumerate(argv):
        if arg == "--src" and i + 1 < len(argv):
            return os.path.abspath(argv[i + 1])
        if arg.startswith("--src="):
            return os.path.abspath(arg[len("--src="):])
    return default
