"""The /dev/nvme-fabrics option string and the kernel's answers (pure functions, no kernel)."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pynvmetcp.kernel import errors as E
from pynvmetcp.kernel.options import (UnsupportedOption, build_options, parse_address,
                                      parse_options, parse_reply, parse_supported)

# Read from /dev/nvme-fabrics of Debian's 6.1.0-56 kernel (the test VM), verbatim.
TEMPLATE_6_1 = (Path(__file__).parent / "nvme-fabrics-6.1.txt").read_text()
SUPPORTED = parse_supported(TEMPLATE_6_1)
SUB = "nqn.2024-01.io.example:disk"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:aed91044-64b5-43e7-9d0a-450903fa7dc6"
HOSTID = "e5cee598-33c2-45fb-a268-6e4ae7a21dfb"


def test_template_parses_into_options_and_flags():
    assert "instance" not in SUPPORTED and "cntlid" not in SUPPORTED
    assert SUPPORTED["traddr"] == "%s"
    assert SUPPORTED["queue_size"] == "%d"
    assert SUPPORTED["hdr_digest"] is None  # a flag
    assert SUPPORTED["discovery"] is None
    assert "dhchap_secret" in SUPPORTED and "tls" not in SUPPORTED


def test_minimal_connect_sends_only_what_was_given():
    text = build_options("127.0.0.1", SUB, 4420, hostnqn=HOSTNQN, hostid=HOSTID,
                         supported=SUPPORTED)
    assert text == (f"nqn={SUB},transport=tcp,traddr=127.0.0.1,trsvcid=4420,"
                    f"hostnqn={HOSTNQN},hostid={HOSTID}")


def test_every_option():
    text = build_options(
        "10.0.0.5", SUB, "4421", hostnqn=HOSTNQN, hostid=HOSTID, nr_io_queues=4,
        queue_size=64, keep_alive_tmo=7, ctrl_loss_tmo=-1, reconnect_delay=2,
        fast_io_fail_tmo=0, hdr_digest=True, data_digest=True, host_traddr="10.0.0.1",
        host_iface="eth1", tos=0, duplicate_connect=True, disable_sqflow=True,
        supported=SUPPORTED)
    opts = parse_options(text)
    assert opts == {
        "nqn": SUB, "transport": "tcp", "traddr": "10.0.0.5", "trsvcid": "4421",
        "host_traddr": "10.0.0.1", "host_iface": "eth1", "hostnqn": HOSTNQN, "hostid": HOSTID,
        "nr_io_queues": "4", "queue_size": "64", "keep_alive_tmo": "7", "reconnect_delay": "2",
        "ctrl_loss_tmo": "-1", "fast_io_fail_tmo": "0", "tos": "0", "duplicate_connect": None,
        "disable_sqflow": None, "hdr_digest": None, "data_digest": None}


def test_connect_params_names_are_accepted():
    """The userspace connect()'s keyword arguments work unchanged (kato → keep_alive_tmo,
    seconds rounded up; timeouts of the userspace transport are ignored)."""
    text = build_options("127.0.0.1", SUB, hostnqn=HOSTNQN, hostid=HOSTID, nr_io_queues=1,
                         queue_size=128, hdr_digest=False, data_digest=True, kato=2.5,
                         timeout=30.0, connect_timeout=10.0, hpda=0, disable_sqflow=False,
                         ctrl_loss_tmo=600.0, reconnect_delay=10.0, supported=SUPPORTED)
    opts = parse_options(text)
    assert opts["keep_alive_tmo"] == "3"
    assert opts["trsvcid"] == "4420"
    assert opts["ctrl_loss_tmo"] == "600" and opts["reconnect_delay"] == "10"
    assert "data_digest" in opts and "hdr_digest" not in opts
    assert "timeout" not in opts and "connect_timeout" not in opts


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="bogus"):
        build_options("127.0.0.1", SUB, bogus=1)


def test_option_the_kernel_lacks_is_refused_not_dropped():
    old = {k: v for k, v in SUPPORTED.items() if k not in ("fast_io_fail_tmo", "host_iface")}
    with pytest.raises(UnsupportedOption, match="fast_io_fail_tmo"):
        build_options("127.0.0.1", SUB, fast_io_fail_tmo=5, supported=old)
    # …but a kernel without it still connects when the option is not asked for
    build_options("127.0.0.1", SUB, supported=old)


@pytest.mark.parametrize("kwargs, match", [
    ({"queue_size": 8}, "queue_size"),  # the kernel's minimum is 16 ("Invalid queue_size 8")
    ({"queue_size": 2048}, "queue_size"),
    ({"nr_io_queues": -1}, "nr_io_queues"),
    ({"kato": 5, "keep_alive_tmo": 6}, "kato"),
    ({"hpda": 1}, "HPDA"),
    ({"host_iface": "eth0,evil=1"}, "host_iface"),
    ({"tos": 256}, "tos"),
    ({"kato": -1}, "keep_alive_tmo"),
    ({"reconnect_delay": 0}, "reconnect_delay"),
])
def test_bad_values_fail_before_the_kernel_sees_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_options("127.0.0.1", SUB, **kwargs)


def test_nqn_length_is_bounded_like_the_kernel():
    long = "nqn.2024-01.io.example:" + "x" * 200
    with pytest.raises(ValueError, match="shorter than 223"):
        build_options("127.0.0.1", long)


def test_hostid_is_normalised():
    text = build_options("127.0.0.1", SUB, hostid=HOSTID.upper().replace("-", ""))
    assert parse_options(text)["hostid"] == HOSTID


def test_reply():
    r = parse_reply("instance=3,cntlid=17\n")
    assert (r.instance, r.cntlid, r.name) == (3, 17, "nvme3")
    with pytest.raises(Exception, match="unexpected answer"):
        parse_reply("garbage")


def test_address():
    assert parse_address("traddr=127.0.0.1,trsvcid=4420,src_addr=127.0.0.1\n") == {
        "traddr": "127.0.0.1", "trsvcid": "4420", "src_addr": "127.0.0.1"}


@pytest.mark.parametrize("err, cls", [
    (errno.EINVAL, E.InvalidOptions), (errno.ECONNREFUSED, E.ConnectionRefused),
    (errno.ETIMEDOUT, E.ConnectTimeout), (errno.EIO, E.ConnectRejected),
    (errno.EHOSTUNREACH, E.Unreachable), (errno.ECONNRESET, E.ConnectionReset),
    (errno.ENOMEM, E.ConnectError),
])
def test_errno_maps_to_a_typed_error(err, cls):
    exc = E.connect_error(err, "nqn=x", ["nvme nvme3: failed to connect socket: -111"],
                          target="127.0.0.1:4499 nqn.x")
    assert type(exc) is cls and exc.errno == err
    assert "127.0.0.1:4499" in str(exc) and "failed to connect socket" in str(exc)
