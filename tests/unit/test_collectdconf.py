"""collectd's configuration syntax (collectd_cgroups.collectdconf) and the CLI's --config.

The parser's expected trees are what collectd 5.12 itself hands a Python plugin for the same text (dumped
from its python plugin's Config objects; tests/e2e/test_collectdconf_e2e.py compares the two live)."""

import json
import os
import shutil
import subprocess
import textwrap

import pytest

from collectd_cgroups import __main__ as cli
from collectd_cgroups import collectdconf, config
from collectd_cgroups.collector import Collector
from collectd_cgroups.collectdconf import ConfigFileError, parse
from tests.support import CHECKOUT, fake_collectd
from tests.support import fixtureutil as fu


def tree(node):
    return [node.key, list(node.values), [tree(c) for c in node.children]]


def only(text):
    """The one top-level node of ``text`` (dedented)."""
    (node,) = parse(textwrap.dedent(text))
    return node


def write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "w") as f:
        f.write(textwrap.dedent(text))
    return str(path)


# -- the syntax --------------------------------------------------------------------------------------------

# A block and what collectd 5.12 gave its Python plugin for it (collectd -T, a module dumping its Config).
COLLECTD_SAMPLE = r'''
<Module "dump">
  A "x\"y" "a\\b" "c\.d" "\n"
  B true True yes no on off One
  C 5 -5 +5 0x1F 010 0789 1.5 -.5 1.5e+3 1.5e3 5abc
  D 1.2.3.4 127.0.0.1:8080 ::1 fe80::1  # comment
  E "multi\
     line" "raw
newline"
  F "a" \
    "b"
  G "#not a comment"
  <Empty>
  </Empty>
  <Sub "s">
    H 1
  </Sub>
</Module>
'''
COLLECTD_TREE = ["Module", ["dump"], [
    ["A", ["x\"y", "a\\b", "c.d", "n"], []],
    ["B", [True, "True", True, False, True, False, "One"], []],
    ["C", [5.0, -5.0, 5.0, 31.0, 10.0, 789.0, 1.5, -0.5, 1500.0, 1.5, "e3", "5abc"], []],
    ["D", ["1.2.3.4", "127.0.0.1:8080", "::1", "fe80::1"], []],
    ["E", ["multiline", "raw\nnewline"], []],
    ["F", ["a", "b"], []],
    ["G", ["#not a comment"], []],
    ["Sub", ["s"], [["H", [1.0], []]]]]]


def test_the_tree_collectd_gives_its_python_plugin():
    node = only(COLLECTD_SAMPLE)
    assert tree(node) == COLLECTD_TREE
    numbers = node.children[2].values
    assert all(type(v) is float for v in numbers[:10])             # every number a float, as collectd's
    assert [type(v) for v in node.children[1].values[:3]] == [bool, str, bool]


def test_nodes_are_shaped_like_collectd_config():
    node = only('''
        <Plugin python>
          <Module "collectd_cgroups">
            Match "^/a$"
          </Module>
        </Plugin>
        ''')
    (module,) = node.children
    (match,) = module.children
    assert isinstance(node.values, tuple) and isinstance(node.children, tuple)
    assert node.parent is None and module.parent is node and match.parent is module
    assert (match.key, match.values, match.children) == ("Match", ("^/a$",), ())
    assert (node.line, module.line, match.line) == (2, 3, 4)


@pytest.mark.parametrize("text, values", [
    (r'K "back\\slash" "quo\"te"', ("back\\slash", 'quo"te')),
    (r'K "regex \\. and \."', ("regex \\. and .",)),            # an unknown escape keeps its character
    ('K "" ""', ("", "")),
    ("K on off yes no true false", (True, False, True, False, True, False)),
    ("K TRUE Off", ("TRUE", "Off")),                             # case-sensitive: strings
    ("K one nothing truth", ("one", "nothing", "truth")),        # longer words are no booleans
    ("K 1 1.25 -3 0x10 007", (1.0, 1.25, -3.0, 16.0, 7.0)),
    ("K 10s", ("10s",)),
    ('K "a" # a comment "b"', ("a",)),
    ('K "a#b"#c', ("a#b",)),
    ("K a_b 0_1", ("a_b", "0_1")),
])
def test_values(text, values):
    assert only(text + "\n").values == values


def test_continuation_lines_and_blank_lines_and_comments():
    node = only('''
        # a comment line

        <Block>   # a block without values, but with children
          Match "one" \\
                "two" \\
                "three"
          Long "first \\
                second"
        </Block>
        ''')
    assert tree(node) == ["Block", [], [["Match", ["one", "two", "three"], []], ["Long", ["first second"], []]]]
    assert node.line == 4 and node.children[1].line == 8


def test_crlf_line_ends():
    node = only('<A "x">\r\n  K 1\r\n</A>\r\n')
    assert tree(node) == ["A", ["x"], [["K", [1.0], []]]]


@pytest.mark.parametrize("text, line, words", [
    ('<Plugin python>\n  K 1\n', 1, "<Plugin> is not closed"),
    ('<Plugin python>\n  K 1\n</plugin>\n', 3, "<Plugin> (line 1) closed by </plugin>"),
    ('K 1\n</Plugin>\n', 2, "</Plugin> closes no block"),
    ('K 1\nAlone\n', 2, "expecting a value after Alone"),
    ('K 1', 1, "collectd needs a newline after the last line"),
    ('<Plugin python\n</Plugin>\n', 1, "expecting '>'"),
    ('<A "x"> K 1\n</A>\n', 1, "expecting end of line after <A ...>"),
    ('K 1\nS "not closed\n', 2, "string not closed"),
    ('K 1\n\nFilter *.conf\n', 3, "unexpected character '*'"),
    ('"Key" 1\n', 1, "expecting an option or a block"),
    ('5 1\n', 1, "expecting an option or a block"),
])
def test_syntax_errors_name_file_and_line(text, line, words):
    with pytest.raises(ConfigFileError) as info:
        parse(text, "/x/c.conf")
    assert info.value.line == line and info.value.path == "/x/c.conf"
    assert str(info.value).startswith("/x/c.conf:%d: " % line) and words in str(info.value), str(info.value)


def test_blocks_nested_by_the_thousand_are_an_error_not_a_traceback():
    with pytest.raises(ConfigFileError) as info:
        parse('<B "x">\n' * 5000, "/x/c.conf")
    assert "blocks nested too deep" in str(info.value)


def test_a_block_with_neither_values_nor_children_is_dropped_as_collectd_does():
    assert [n.key for n in parse("<Empty>\n</Empty>\nK 1\n")] == ["K"]


# -- Include -----------------------------------------------------------------------------------------------

def test_include_directory_with_filter_glob_and_missing_paths(tmp_path):
    d = tmp_path / "conf.d"
    for name in ("b.conf", "a.conf", ".hidden.conf", "sub/c.conf"):
        write(d / name, 'From "%s"\n' % name)
    write(d / "README", "this is no configuration {\n")      # left out by the Filter, never parsed
    write(tmp_path / "x" / "g.conf", 'From "glob"\n')
    main = write(tmp_path / "collectd.conf", '''
        First 1
        <Include "%s">
          Filter "*.conf"
        </Include>
        Include "%s/*/g.conf"
        Include "%s/missing.conf"
        <Plugin python>
          Include "not/expanded/inside/a/block"
        </Plugin>
        ''' % (d, tmp_path, tmp_path))
    warnings = []
    nodes = collectdconf.read_config(main, warn=warnings.append)
    assert [(n.key, n.values) for n in nodes] == [
        ("First", (1.0,)), ("From", ("a.conf",)), ("From", ("b.conf",)), ("From", ("sub/c.conf",)),
        ("From", ("glob",)), ("Plugin", ("python",))]
    assert nodes[1].path == str(d / "a.conf") and nodes[1].line == 1
    assert nodes[-1].children[0].key == "Include"
    assert warnings == ["%s:7: Include: %s/missing.conf: no such file or directory" % (main, tmp_path)]


def test_include_of_itself_stops_at_collectds_depth(tmp_path):
    path = str(tmp_path / "loop.conf")
    write(path, 'Include "%s"\n' % path)
    with pytest.raises(ConfigFileError) as info:
        collectdconf.read_config(path)
    assert "nested more than 8 deep" in str(info.value) and str(info.value).startswith(path + ":1: ")


def test_a_broken_drop_in_is_refused_naming_its_own_line(tmp_path):
    write(tmp_path / "d" / "ok.conf", "K 1\n")
    bad = write(tmp_path / "d" / "zz.conf", "K 1\n<Plugin python>\n")
    main = write(tmp_path / "c.conf", 'Include "%s"\n' % (tmp_path / "d"))
    with pytest.raises(ConfigFileError) as info:
        collectdconf.read_config(main)
    assert str(info.value).startswith(bad + ":2: ")


def test_include_options_other_than_filter_are_refused(tmp_path):
    main = write(tmp_path / "c.conf", '<Include "%s">\n  Pattern "*.conf"\n</Include>\n' % tmp_path)
    with pytest.raises(ConfigFileError) as info:
        collectdconf.read_config(main)
    assert str(info.value).startswith(main + ":2: Pattern: only Filter")


# -- the plugin's block ------------------------------------------------------------------------------------

def test_module_blocks_of_every_plugin_python_block_in_order():
    nodes = parse(textwrap.dedent('''
        <Plugin python>
          <Module "other">
            K 1
          </Module>
          <Module "COLLECTD_CGROUPS">
            N 1
          </Module>
        </Plugin>
        <Plugin "Python">
          <Module "collectd_cgroups">
            N 2
          </Module>
        </Plugin>
        <Plugin exec>
          <Module "collectd_cgroups">
            N 3
          </Module>
        </Plugin>
        '''))
    assert [b.children[0].values for b in collectdconf.module_blocks(nodes)] == [(1.0,), (2.0,)]


def block(text):
    (b,) = collectdconf.module_blocks(parse('<Plugin python>\n<Module "collectd_cgroups">\n%s</Module>\n</Plugin>\n'
                                            % textwrap.dedent(text), "/c.conf"))
    return b


def test_block_options_are_the_plugins_own():
    b = block('''
        Match "^/batch/(?P<name>[^/]+)$" "batch"
        Ignore "^/batch/x"
        PerCPU true
        MaxValues 500
        KeepFilesOpen false
        ''')
    options, given = collectdconf.block_options(b)
    expected = config.parse_config(fake_collectd.module_block(
        fake_collectd.option("Match", "^/batch/(?P<name>[^/]+)$", "batch"), fake_collectd.option("Ignore", "^/batch/x"),
        fake_collectd.option("PerCPU", True), fake_collectd.option("MaxValues", 500.0),
        fake_collectd.option("KeepFilesOpen", False)))[0]
    assert options == expected
    assert options.max_values == 500 and options.keep_files is False
    assert given == {"match", "ignore", "percpu", "maxvalues", "keepfilesopen"}


@pytest.mark.parametrize("text, line, words", [
    ('Match "^/ok$"\nMatch "(("\n', 4, "Match"),
    ('InstanceFormat "{name}"\nPerCPU "yes"\n', 4, "PerCPU: expects true or false"),
    ('InstanceFormat "{name}"\nInstanceFormat "{id}"\n', 4, "InstanceFormat: given more than once"),
    ('Bogus 1\n', 3, "Bogus: unknown option"),
    ('HostRoot "/nonexistent/host"\n', 3, "HostRoot: '/nonexistent/host' is not a directory"),
    ('MaxDevices 2.5\n', 3, "MaxDevices: expects a whole number"),
    ('Include "/etc/other.conf"\n', 3, "Include: unknown option"),
])
def test_an_option_the_plugin_refuses_is_named_with_its_line(text, line, words):
    with pytest.raises(ConfigFileError) as info:
        collectdconf.block_options(block(text))
    assert str(info.value).startswith("/c.conf:%d: " % line) and words in str(info.value), str(info.value)


# -- the CLI: --config -------------------------------------------------------------------------------------

def args_of(*argv):
    return cli._parse_args(list(argv))


def test_the_shipped_drop_in_gives_the_defaults(capsys):
    path = os.path.join(CHECKOUT, "conf", "collectd-cgroups.conf")
    (b,) = collectdconf.module_blocks(collectdconf.read_config(path))
    assert collectdconf.block_options(b) == (config.Options(), set())
    assert cli.options_from_args(args_of("--config", path)) == cli.options_from_args(args_of("--no-config"))
    assert capsys.readouterr().err == ""


def render_demo_config(tmp_path):
    """conf/collectd.conf.in as the Makefile makes build/collectd.conf of it (its sed)."""
    build, site = str(tmp_path / "build"), str(tmp_path / "site-packages")
    out = str(tmp_path / "collectd.conf")
    with open(out, "w") as f:
        subprocess.run(["sed", "-e", "s|@BUILD@|%s|g" % build, "-e", "s|@SRC@|%s|g" % CHECKOUT,
                        "-e", "s|@SITE@|%s|g" % site, os.path.join(CHECKOUT, "conf", "collectd.conf.in")],
                       stdout=f, check=True)
    return out


def demo_tree(tmp_path):
    """v2-pure with two cgroups where `make demo` puts its own (copies of a container's files)."""
    root = fu.copy_tree("v2-pure", tmp_path)
    cgroup = os.path.join(root, "sys/fs/cgroup")
    source = os.path.join(cgroup, "system.slice", "docker-%s.scope" % "67490dfe16f03ced6edb0d7f2c56b1726ec290fd"
                          "7f18eebfb6054fa446663165")
    for name in ("web", "db"):
        shutil.copytree(source, os.path.join(cgroup, "collectd-cgroups-demo", name))
    return root


V2_NAMES = {"docker-api", "podman-db", "k8s-ce06136d2ad7", "k8s-afe4751b95d7", "k8s-default_nginx-7c5ddbdf54-x8f9q_nginx",
            "nspawn-my-box"}


def instances(entries):
    return {e["plugin_instance"] for e in entries}


def test_the_demo_configuration_finds_the_demo_cgroups(tmp_path):
    conf = render_demo_config(tmp_path)
    (b,) = collectdconf.module_blocks(collectdconf.read_config(conf))
    options, given = collectdconf.block_options(b)
    assert options.match == [("^/collectd-cgroups-demo/(?P<name>[^/]+)$", "cgroup")] and given == {"match"}
    root = demo_tree(tmp_path)
    without, _ = fu.cli_json(root)
    with_config, err = fu.cli_json(root, "--config", conf)
    assert err == ""
    assert instances(without) == V2_NAMES           # what `collectd-cgroups` said before --config
    assert instances(with_config) == V2_NAMES | {"cgroup-web", "cgroup-db"}


def debian_config(tmp_path, module_lines):
    """/etc/collectd/collectd.conf as Debian's, with the plugin's drop-in in collectd.conf.d/."""
    etc = tmp_path / "etc" / "collectd"
    write(etc / "collectd.conf.d" / "collectd-cgroups.conf", '''
        <LoadPlugin python>
          Globals true
        </LoadPlugin>
        <Plugin python>
          Import "collectd_cgroups.plugin"
          <Module "collectd_cgroups">
        %s
          </Module>
        </Plugin>
        ''' % "\n".join("    " + line for line in module_lines))
    write(etc / "collectd.conf.d" / "other.conf.dpkg-old", "<Broken\n")    # not a *.conf: never read
    return write(etc / "collectd.conf", '''
        # Debian's, shortened
        FQDNLookup true
        LoadPlugin syslog
        <Plugin syslog>
            LogLevel info
        </Plugin>
        LoadPlugin cpu
        <Include "%s">
            Filter "*.conf"
        </Include>
        ''' % (etc / "collectd.conf.d"))


def plugin_names(root, *options):
    """The plugin_instance names of one pass of the plugin's own path: a <Module> block of these option
    nodes -> parse_config -> Collector (what Instance does)."""
    opts = config.parse_config(fake_collectd.module_block(*(fake_collectd.option(k, *v) for k, v in options)))[0]
    return {item.instance for item in Collector(opts).collect()}


def test_a_debian_configuration_with_a_drop_in_names_containers_as_the_plugin(tmp_path):
    root = demo_tree(tmp_path)
    options = [("HostRoot", (root,)), ("Match", ("^/collectd-cgroups-demo/(?P<name>[^/]+)$", "demo")),
               ("InstanceFormat", ("{runtime}.{name}",)), ("Ignore", ("^/machine.slice/", "/collectd-cgroups-demo/db$")),
               ("Metrics", ("cpu", "memory"))]
    conf = debian_config(tmp_path, ['%s %s' % (k, " ".join(json.dumps(v) for v in vs)) for k, vs in options])
    rc, out, err = fu.run_cli(["--config", conf, "--json"])
    assert rc == 0, err
    names = instances(json.loads(out))
    # podman and nspawn (machine.slice) and the demo's db ignored, the demo's web matched, names reformatted
    assert names == {"docker.api", "k8s.ce06136d2ad7", "k8s.afe4751b95d7", "k8s.default_nginx-7c5ddbdf54-x8f9q_nginx",
                     "demo.web"}
    assert names == plugin_names(root, *options)
    assert err == ""


def test_command_line_lists_add_and_single_values_win(tmp_path):
    root = demo_tree(tmp_path)
    conf = debian_config(tmp_path, ['HostRoot "/nonexistent/host"',      # replaced by --root, not checked
                                    'Match "^/collectd-cgroups-demo/(?P<name>web)$" "demo"',
                                    'InstanceFormat "{runtime}.{name}"', 'Runtimes "docker" "nspawn"',
                                    'IgnoreValue "memory-*"', 'MaxValues 300', 'KeepFilesOpen false'])
    args = args_of("--config", conf, "--root", root, "--match", "^/collectd-cgroups-demo/(?P<name>db)$@more",
                   "--instance-format", "{runtime}-{name}", "--ignore-value", "cpu-*")
    options = cli.options_from_args(args)
    assert options.root == root
    assert options.match == [("^/collectd-cgroups-demo/(?P<name>web)$", "demo"),
                             ("^/collectd-cgroups-demo/(?P<name>db)$", "more")]
    assert options.instance_format == "{runtime}-{name}"
    assert options.runtimes == ("docker", "nspawn")      # not given on the command line: the file's
    assert options.ignore_values == ["memory-*", "cpu-*"] and options.max_values == 300
    assert options.keep_files is False
    assert cli.options_from_args(args, keep_files="auto").keep_files is False    # top: the file's KeepFilesOpen
    assert cli.options_from_args(args_of("--no-config"), keep_files="auto").keep_files == "auto"
    entries, err = fu.cli_json(root, "--config", conf, "--match", "^/collectd-cgroups-demo/(?P<name>db)$@more",
                               "--runtimes", "docker")
    assert instances(entries) == {"docker.api", "demo.web", "more.db"}


def test_several_module_blocks_the_first_taken_and_said(tmp_path):
    conf = write(tmp_path / "c.conf", '''
        <Plugin python>
          <Module "collectd_cgroups">
            InstanceFormat "{name}"
          </Module>
          <Module "collectd_cgroups">
            InstanceFormat "{id}"
          </Module>
        </Plugin>
        ''')
    rc, out, err = fu.run_cli(["--config", conf, "--root", fu.tree("v2-pure"), "--json"])
    assert rc == 0
    assert "docker-api" not in instances(json.loads(out)) and "api" in instances(json.loads(out))
    assert err == "collectd-cgroups: 2 <Module \"collectd_cgroups\"> blocks (%s:3, %s:6): the first taken\n" % (conf, conf)


def test_a_file_without_the_block_gives_the_defaults_and_says_so(tmp_path):
    conf = write(tmp_path / "c.conf", "LoadPlugin cpu\n")
    rc, out, err = fu.run_cli(["--config", conf, "--root", fu.tree("v2-pure"), "--json"])
    assert rc == 0 and instances(json.loads(out)) == V2_NAMES
    assert err == 'collectd-cgroups: %s has no <Module "collectd_cgroups"> block in <Plugin python>: the defaults\n' % conf


@pytest.mark.parametrize("text, where, words", [
    ('<Plugin python>\n  <Module "collectd_cgroups">\n    Match "(("\n  </Module>\n</Plugin>\n', ":3: ", "Match"),
    ('<Plugin python>\n  <Module "collectd_cgroups">\n    Metrics "cpu" "disk"\n  </Module>\n</Plugin>\n', ":3: ",
     "Metrics: unknown group 'disk'"),
    ('<Plugin python>\n  <Module "collectd_cgroups">\n    Match "x"\n</Plugin>\n', ":4: ",
     "<Module> (line 2) closed by </Plugin>"),
    ('Hostname "a" "b\n', ":1: ", "string not closed"),
])
def test_a_bad_configuration_exits_2_naming_file_line_and_option(tmp_path, capsys, text, where, words):
    conf = write(tmp_path / "c.conf", text)
    with pytest.raises(SystemExit) as info:
        cli.main(["--config", conf, "--root", fu.tree("v2-pure")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("collectd-cgroups: %s%s" % (conf, where)) and words in err and "Traceback" not in err, err


def test_an_unreadable_file_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--config", str(tmp_path / "missing.conf")])
    assert info.value.code == 2
    assert capsys.readouterr().err == "collectd-cgroups: %s: cannot read: No such file or directory\n" % (
        tmp_path / "missing.conf")


# -- the CLI without --config ------------------------------------------------------------------------------

def test_default_search_takes_the_first_file_found_and_says_which(tmp_path, monkeypatch, capsys):
    first = str(tmp_path / "build" / "collectd.conf")
    second = write(tmp_path / "etc" / "collectd.conf", '<Plugin python>\n<Module "collectd_cgroups">\n'
                   'InstanceFormat "{name}"\n</Module>\n</Plugin>\n')
    monkeypatch.setattr(cli, "default_config_files", lambda: (first, second))
    assert cli.options_from_args(args_of()).instance_format == "{name}"
    assert capsys.readouterr().err == "collectd-cgroups: options from %s\n" % second
    write(first, "LoadPlugin cpu\n")        # the first that exists wins, block or not
    assert cli.options_from_args(args_of()).instance_format == config.Options().instance_format
    assert capsys.readouterr().err.startswith("collectd-cgroups: options from %s\n" % first)
    # --root (a tree from elsewhere) and --no-config read none, and say nothing
    assert cli.options_from_args(args_of("--root", fu.tree("v2-pure"))).instance_format == "{runtime}-{name}"
    assert cli.options_from_args(args_of("--no-config")).instance_format == "{runtime}-{name}"
    assert capsys.readouterr().err == ""


def test_default_search_with_nothing_found_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "default_config_files", lambda: (str(tmp_path / "a.conf"),))
    assert cli.options_from_args(args_of()) == cli.options_from_args(args_of("--no-config"))
    assert capsys.readouterr().err == "collectd-cgroups: no collectd configuration found (%s): the defaults\n" % (
        tmp_path / "a.conf")


def test_default_files_begin_with_the_checkouts_build_config():
    # The tests run from a checkout (conf/collectd.conf.in beside the package): `make run`'s file first.
    assert cli.default_config_files() == (os.path.join(CHECKOUT, "build", "collectd.conf"),
                                          "/etc/collectd/collectd.conf", "/etc/collectd.conf")


def test_config_and_no_config_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as info:
        args_of("--config", "/etc/collectd/collectd.conf", "--no-config")
    assert info.value.code == 2 and "not allowed with argument --config" in capsys.readouterr().err
