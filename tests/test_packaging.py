"""The shipped artefacts: the Debian package, the console script, the drop-in block."""

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)


def test_console_script_runs_one_pass():
    script = shutil.which("collectd-cgroups", path=os.path.dirname(sys.executable))
    assert script, "pip install . must provide the collectd-cgroups console script"
    out = subprocess.run([script, "--layout"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("cgroup layout: ")


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb (Debian's dpkg) is not installed")
def test_debian_package_installs_an_importable_module(tmp_path):
    out = subprocess.run([os.path.join(SRC, "packaging", "build-deb.sh"), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    deb = out.stdout.strip()
    assert os.path.basename(deb).startswith("collectd-cgroups_") and deb.endswith("_all.deb")
    fields = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Depends"], capture_output=True, text=True).stdout
    assert "Package: collectd-cgroups" in fields and "collectd-core" in fields
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True)
    dist = root / "usr/lib/python3/dist-packages"
    assert (dist / "collectd_cgroups/plugin.py").is_file()
    assert (dist / "collectd_cgroups/readers/memory.py").is_file()
    assert (root / "usr/share/doc/collectd-cgroups/examples/collectd-cgroups.conf").is_file()
    # Debian's interpreter (the one collectd embeds) imports it from the package's location.
    env = dict(os.environ, PYTHONPATH=str(dist))
    run = subprocess.run(["/usr/bin/python3", "-c",
                          "import collectd_cgroups.__main__ as m, sys; sys.exit(m.main(['--layout']))"],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=60)
    assert run.returncode == 0, run.stderr
    assert "cgroup layout:" in run.stdout
    script = (root / "usr/bin/collectd-cgroups").read_text()
    assert script.startswith("#!/usr/bin/python3")


def test_drop_in_block_names_the_module_and_documents_every_option():
    block = open(os.path.join(SRC, "conf", "collectd-cgroups.conf")).read()
    readme = open(os.path.join(SRC, "README.rst")).read()
    assert 'Import "collectd_cgroups.plugin"' in block
    assert '<Module "collectd_cgroups">' in block
    from collectd_cgroups import config
    for option in config.OPTIONS:
        assert "# %s " % option in block, "conf/collectd-cgroups.conf lacks option %s" % option
        assert "\n%s " % option in readme, "README.rst's option table lacks %s" % option
