"""Configuration: TOML files, address parsing, and the one-line errors a mistake produces."""
from __future__ import annotations

import textwrap

import pytest

import pynvmetcp
from pynvmetcp.target import ConfigError, Target, TargetConfig, parse_address

TOML = """
[target]
max_queue_size = 256
max_transfer = "512K"
in_capsule_data = "8K"

[[listen]]
address = "127.0.0.1:0"
[listen.ana]
2 = "inaccessible"

[[listen]]
address = "127.0.0.1:0"
discovery = true

[[referral]]
address = "192.0.2.1:8009"
portid = 4

[[subsystem]]
nqn = "nqn.2024-01.io.pynvmetcp:toml"
allow_hosts = ["nqn.2014-08.org.nvmexpress:uuid:9e1bca8c-5f5e-4b3b-8d3e-2b6a1d0c7f11"]
serial = "SERIAL42"
version = "1.4"

[[subsystem.namespace]]
path = "mem:4M"

[[subsystem.namespace]]
path = "{file}"
size = "2M"
block_size = 4096
ana_group = 2
uuid = "12345678-1234-5678-1234-567812345678"
"""


def write(tmp_path, text: str):
    p = tmp_path / "target.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_toml_file_builds_a_working_target(tmp_path):
    cfg = TargetConfig.from_toml(write(tmp_path, TOML.format(file=tmp_path / "d.img")))
    assert cfg.max_queue_size == 256 and cfg.max_transfer == 512 << 10
    assert cfg.listen[0].ana == {2: "inaccessible"} and cfg.listen[1].discovery_only
    with Target.serve(cfg) as t:
        sub = t.subsystem("nqn.2024-01.io.pynvmetcp:toml")
        assert sub.serial == "SERIAL42" and sub.version == 0x00010400
        assert [ns.size for ns in sub.namespaces.values()] == [4 << 20, 2 << 20]
        assert sub.namespaces[2].block_size == 4096 and str(sub.namespaces[2].uuid).startswith(
            "12345678")
        assert sub.ana_state(t.ports[0].portid, 2) == 3
        assert not sub.host_allowed("nqn.2014-08.org.nvmexpress:uuid:"
                                    "00000000-0000-0000-0000-000000000001")
        log = pynvmetcp.discover("127.0.0.1", t.discovery_port,
                                 hostnqn="nqn.2014-08.org.nvmexpress:uuid:"
                                         "9e1bca8c-5f5e-4b3b-8d3e-2b6a1d0c7f11")
        assert {e.subtype for e in log.entries} == {1, 2, 3}
        with pynvmetcp.connect("127.0.0.1", t.port, "nqn.2024-01.io.pynvmetcp:toml",
                               hostnqn="nqn.2014-08.org.nvmexpress:uuid:"
                                       "9e1bca8c-5f5e-4b3b-8d3e-2b6a1d0c7f11") as c:
            idc = c.identify()
            assert idc.mdts == 7 and idc.ioccsz == (64 + 8192) // 16 and idc.ver == 0x10400
    assert (tmp_path / "d.img").stat().st_size == 2 << 20


@pytest.mark.parametrize("text,message", [
    ("[[listen]]\naddress = '127.0.0.1:99999'\n", "out of range"),
    ("[[listen]]\naddress = '127.0.0.1:0'\nbogus = 1\n", "unknown key 'bogus'"),
    ("[[listen]]\naddress = '127.0.0.1:0'\n[[subsystem]]\nnqn = 'x'\n", "subsystem NQN 'x'"),
    ("[[listen]]\naddress = '127.0.0.1:0'\n[[subsystem]]\n", "missing 'nqn'"),
    ("[[listen]]\naddress = '127.0.0.1:0'\n[[subsystem]]\nnqn = 'nqn.2024-01.io.a:b'\n"
     "[[subsystem.namespace]]\npath = 'mem:lots'\n", "not a size"),
    ("[[listen]]\naddress = '127.0.0.1:0'\n[[subsystem]]\nnqn = 'nqn.2024-01.io.a:b'\n"
     "[[subsystem.namespace]]\npath = '/nonexistent/disk'\n", "does not exist"),
    ("[[listen]]\naddress = '127.0.0.1:0'\n[[subsystem]]\nnqn = 'nqn.2024-01.io.a:b'\n"
     "version = '2.0'\n", "version"),
    ("[[listen]]\naddress = '127.0.0.1:0'\n[listen.ana]\n1 = 'sideways'\n[[subsystem]]\n"
     "nqn = 'nqn.2024-01.io.a:b'\n", "unknown ANA state"),
    ("[[listen]]\naddress = '127.0.0.1:0'\n[[subsystem]]\nnqn = 'nqn.2024-01.io.a:b'\n"
     "ports = [7]\n", "no port with id 7"),
    ("[target]\nmax_transfer = 5000\n[[listen]]\naddress = '127.0.0.1:0'\n", "power of two"),
    ("[[subsystem]]\nnqn = 'nqn.2024-01.io.a:b'\n", "no listen address"),
    ("[[listen]\n", "target.toml"),
])
def test_config_errors_are_one_readable_line(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        Target(TargetConfig.from_toml(write(tmp_path, text)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        TargetConfig.from_toml(tmp_path / "nope.toml")


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:4420", ("127.0.0.1", 4420)), ("[::1]:4421", ("::1", 4421)),
    ("10.0.0.1", ("10.0.0.1", 4420)), ("4430", ("0.0.0.0", 4430)), (":4431", ("0.0.0.0", 4431)),
    ("[fe80::1]", ("fe80::1", 4420)),
])
def test_parse_address(text, expected):
    assert parse_address(text) == expected
