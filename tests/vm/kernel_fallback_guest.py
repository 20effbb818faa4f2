"""Runs inside the kernel VM as root: the kernel fallback against nvmet-tcp (and our target).

Prints one JSON line per check ({"check": name, ...}); test_kernel_fallback.py asserts on them.
Every step is guarded so that one failure is reported and the rest still run; the last line is
{"check": "done"}. Options: --record DIR records the sysfs tree (two paths to one namespace, a
plain controller and a persistent discovery controller) with scripts/record_sysfs.py;
--bench runs benchmarks/ioctl.py on the connected controller.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

NQN = "nqn.2024-01.io.pynvmetcp:kernel-fallback"
NQN2 = "nqn.2024-01.io.pynvmetcp:kernel-fallback-2"
NS_UUID = "6f1c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
NS_NGUID = "0123456789abcdef0123456789abcdef"
NS2_UUID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
CFG = Path("/sys/kernel/config/nvmet")



def settle(get, ready, timeout: float = 90.0, interval: float = 0.2):
    """Poll ``get()`` until ``ready(value)`` or the deadline; returns the last value."""
    deadline = time.monotonic() + timeout
    value = get()
    while not ready(value) and time.monotonic() < deadline:
        time.sleep(interval)
        value = get()
    return value

def emit(check: str, **fields) -> None:
    print(json.dumps({"check": check, **fields}, default=str), flush=True)


def step(name: str):
    """Run a check; an exception becomes {"check": name, "error": ...} instead of ending the run."""
    def wrap(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - the report is the point
            emit(name, error=f"{type(exc).__name__}: {exc}",
                 trace=traceback.format_exc()[-1500:])
        return fn
    return wrap


def sh(cmd: str, check: bool = True) -> str:
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and out.returncode:
        raise RuntimeError(f"{cmd}: {out.stderr.strip()}")
    return out.stdout


def setup_kernel() -> None:
    sh("modprobe nvme-tcp; modprobe nvmet-tcp; modprobe loop", check=False)
    if not CFG.exists():
        sh("mount -t configfs none /sys/kernel/config", check=False)
    sh("ip link set lo up", check=False)


def nvmet_subsystem(nqn: str, backing: str, size: str, ns_uuid: str,
                    nguid: str | None = None) -> None:
    sh(f"truncate -s {size} {backing}")
    loop = sh(f"losetup -f --show {backing}").strip()
    s = CFG / "subsystems" / nqn
    s.mkdir()
    (s / "attr_allow_any_host").write_text("1")
    ns = s / "namespaces" / "1"
    ns.mkdir()
    (ns / "device_path").write_text(loop)
    (ns / "device_uuid").write_text(ns_uuid)
    if nguid:
        (ns / "device_nguid").write_text(str(uuid.UUID(nguid)))
    (ns / "enable").write_text("1")


def nvmet_port(port_id: int, trsvcid: int, nqns: list[str]) -> None:
    p = CFG / "ports" / str(port_id)
    p.mkdir()
    (p / "addr_traddr").write_text("127.0.0.1")
    (p / "addr_trtype").write_text("tcp")
    (p / "addr_trsvcid").write_text(str(trsvcid))
    (p / "addr_adrfam").write_text("ipv4")
    for nqn in nqns:
        os.symlink(CFG / "subsystems" / nqn, p / "subsystems" / nqn)


def dd_roundtrip(dev: str, backing: str, seek_blocks: int) -> dict:
    """Write a pattern with O_DIRECT through the block device, read it back, and check the target
    stored it (the backing file of nvmet's loop device is the oracle)."""
    pattern = os.urandom(64 * 1024)
    Path("/tmp/pattern").write_bytes(pattern)
    sh(f"dd if=/tmp/pattern of={dev} bs=4096 count=16 seek={seek_blocks} oflag=direct "
       f"conv=fsync status=none")
    sh(f"dd if={dev} of=/tmp/readback bs=4096 count=16 skip={seek_blocks} iflag=direct "
       f"status=none")
    back = Path("/tmp/readback").read_bytes()
    with open(backing, "rb") as f:
        f.seek(seek_blocks * 4096)
        stored = f.read(len(pattern))
    return {"written": len(pattern), "read_equal": back == pattern,
            "target_equal": stored == pattern}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--record", help="record the sysfs tree into this directory")
    ap.add_argument("--bench", action="store_true")
    args = ap.parse_args()

    setup_kernel()
    nvmet_subsystem(NQN, "/tmp/disk1.img", "64M", NS_UUID, NS_NGUID)
    nvmet_subsystem(NQN2, "/tmp/disk2.img", "32M", NS2_UUID)
    nvmet_port(1, 4420, [NQN, NQN2])
    nvmet_port(2, 4421, [NQN, NQN2])
    nvmet_port(3, 8009, [NQN])  # linking a port to a subsystem listens before it returns

    from pynvmetcp import kernel
    from pynvmetcp.errors import NvmeStatusError
    from pynvmetcp.kernel import options as O
    from pynvmetcp.kernel.passthru import native

    st: dict = {}

    @step("available")
    def _():
        ok, why = kernel.available()
        emit("available", ok=ok, reason=why, release=os.uname().release)

    @step("options")
    def _():
        raw = open(O.FABRICS_DEV).read()
        emit("options", raw=raw.strip(), supported=sorted(O.parse_supported(raw)))

    @step("connect")
    def _():
        c = kernel.connect("127.0.0.1", 4420, NQN, nr_io_queues=2, kato=5)
        st["ctrl"] = c
        emit("connect", name=c.name, cntlid=c.cntlid, already=c.already_connected,
             options=c.options, state=c.info().state)

    @step("block_device")
    def _():
        dev = kernel.find_block_device(uuid=NS_UUID)
        by_nguid = kernel.find_block_device(nguid=NS_NGUID)
        st["dev"] = dev
        ns = kernel.find_namespace(uuid=NS_UUID)
        emit("block_device", device=dev, by_nguid=by_nguid, exists=bool(dev and os.path.exists(dev)),
             nsid=ns.nsid, size=ns.size, wwid=ns.wwid, paths=[p.name for p in ns.paths])

    @step("dd")
    def _():
        emit("dd", **dd_roundtrip(st["dev"], "/tmp/disk1.img", 100))

    @step("identify")
    def _():
        c = st["ctrl"]
        idc = c.identify()
        idns = c.identify_namespace(1)
        ids = c.namespace_ids(1)
        emit("identify", subnqn=idc.subnqn, cntlid=idc.cntlid, mn=idc.mn, nn=idc.nn,
             nsze=idns.nsze, ns_uuid=str(uuid.UUID(bytes=ids[3])) if 3 in ids else None,
             namespaces=c.namespaces())

    @step("logpage")
    def _():
        c = st["ctrl"]
        smart = c.smart_log()
        err = c.error_log(1)
        emit("logpage", smart_keys=sorted(k for k in smart if not k.startswith("_"))[:6],
             data_units_written=smart.data_units_written, error_entries=len(err))

    @step("status_encoding")
    def _():
        # Raw ioctl return for an unsupported log page and an unknown opcode, then the typed error.
        mod = native()
        fd = st["ctrl"].fileno()
        cmd = mod.ffi.new("struct nvme_passthru_cmd64 *")
        buf = bytearray(512)
        keep = mod.ffi.from_buffer(buf)
        cmd.opcode, cmd.nsid = 0x02, 0xFFFFFFFF
        cmd.addr, cmd.data_len = int(mod.ffi.cast("uintptr_t", keep)), 512
        cmd.cdw10 = 0xBF | ((512 // 4 - 1) << 16)
        rc_log = mod.lib.pynvme_admin64(fd, cmd)
        cmd2 = mod.ffi.new("struct nvme_passthru_cmd64 *")
        cmd2.opcode = 0xC5
        rc_op = mod.lib.pynvme_admin64(fd, cmd2)
        try:
            st["ctrl"].get_log_page(0xBF, 512)
            typed = None
        except NvmeStatusError as exc:
            typed = {"status": exc.status, "sct": exc.sct, "sc": exc.sc, "dnr": exc.dnr,
                     "name": exc.name}
        emit("status_encoding", rc_bad_log=rc_log, rc_bad_opcode=rc_op, typed=typed)

    @step("io_passthru")
    def _():
        c = st["ctrl"]
        ns = c.namespace(1)
        data = os.urandom(ns.block_size * 8)
        ns.write(200, data)
        back = ns.read(200, 8)
        into = bytearray(len(data))  # read_into hands the driver a ReadInto, not a Command
        ns.read_into(200, memoryview(into))
        emit("io_passthru", block_size=ns.block_size, equal=bytes(back) == data,
             into_equal=bytes(into) == data, block_device=c.block_device(1))

    @step("already")
    def _():
        again = kernel.connect("127.0.0.1", 4420, NQN)
        emit("already", name=again.name, already=again.already_connected,
             same=again.name == st["ctrl"].name)

    @step("multipath")
    def _():
        c2 = kernel.connect("127.0.0.1", 4421, NQN)
        st["ctrl2"] = c2
        # the kernel scans the new path's namespaces in a work queue, after connect returns
        ns = settle(lambda: kernel.find_namespace(uuid=NS_UUID),
                    lambda n: n is not None and len(n.paths) >= 2)
        ctrls = {c.name: [n.name for n in c.namespaces] for c in kernel.controllers()}
        emit("multipath", second=c2.name, head=ns.name, paths=[p.name for p in ns.paths],
             ana=[p.ana_state for p in ns.paths], per_controller=ctrls,
             device=kernel.find_block_device(uuid=NS_UUID))

    @step("second_subsystem")
    def _():
        c3 = kernel.connect("127.0.0.1", 4420, NQN2)
        st["ctrl3"] = c3
        emit("second_subsystem", name=c3.name,
             device=kernel.find_block_device(uuid=NS2_UUID))

    @step("persistent_discovery")
    def _():
        log = kernel.discover("127.0.0.1", 8009, persistent=True)
        disc = [c for c in kernel.controllers() if c.is_discovery]
        emit("persistent_discovery", entries=len(log.entries),
             controllers=[(c.name, c.kato, c.state) for c in disc])
        again = kernel.discover("127.0.0.1", 8009, persistent=True)
        disc2 = [c.name for c in kernel.controllers() if c.is_discovery]
        emit("persistent_discovery_reuse", entries=len(again.entries), controllers=disc2)

    if args.record:
        @step("record")
        def _():
            out = subprocess.run([sys.executable, str(ROOT / "scripts" / "record_sysfs.py"),
                                  "--clean", args.record], capture_output=True, text=True)
            emit("record", rc=out.returncode, stderr=out.stderr[-500:],
                 files=sum(len(f) for _, _, f in os.walk(args.record)))

    if args.bench:
        @step("bench")
        def _():
            out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ioctl.py"),
                                  "--rounds", "11", "--calls", "200", "--device", st["ctrl"].device],
                                 capture_output=True, text=True, cwd=ROOT)
            emit("bench", rc=out.returncode, tail=out.stdout.strip().splitlines()[-6:],
                 stderr=out.stderr[-500:])

    @step("discovery")
    def _():
        for c in kernel.controllers():  # the persistent one must not be reused by a one-shot
            if c.is_discovery:
                kernel.disconnect(c.name)
        before = {c.name for c in kernel.controllers()}
        log = kernel.discover("127.0.0.1", 8009)
        after = {c.name for c in kernel.controllers()}
        emit("discovery", genctr=log.genctr,
             entries=[[e.subtype, e.subnqn, e.traddr.strip(), e.trsvcid.strip()]
                      for e in log.entries], left_behind=sorted(after - before))

    @step("errors")
    def _():
        out = {}
        for label, call in (
                ("refused", lambda: kernel.connect("127.0.0.1", 4499, NQN)),
                ("unknown_nqn", lambda: kernel.connect("127.0.0.1", 4420,
                                                       "nqn.2024-01.io.pynvmetcp:nosuch")),
                ("hostid_mismatch", lambda: kernel.connect(
                    "127.0.0.1", 4421, NQN2, hostid="11111111-2222-3333-4444-555555555555")),
        ):
            try:
                r = call()
                out[label] = {"connected": r.name, "already": r.already_connected}
                if not r.already_connected:
                    r.disconnect()
            except kernel.KernelError as exc:
                out[label] = {"type": type(exc).__name__, "errno": exc.errno, "msg": str(exc),
                              "kernel_log": getattr(exc, "kernel_log", None)}
        emit("errors", **out)

    @step("disconnect")
    def _():
        for c in (st.get("ctrl"), st.get("ctrl2"), st.get("ctrl3")):
            if c is not None:
                c.close()
        names = kernel.disconnect(subnqn=NQN) + kernel.disconnect(subnqn=NQN2)
        for c in kernel.controllers():
            kernel.disconnect(c.name)
            names.append(c.name)
        left = sorted(os.listdir("/sys/class/nvme")) if os.path.isdir("/sys/class/nvme") else []
        emit("disconnect", deleted=names, left=left,
             device_gone=not os.path.exists(st.get("dev") or "/nonexistent"))

    @step("userspace_target")
    def _():
        import importlib.util

        if importlib.util.find_spec("pynvmetcp.target") is None:
            emit("userspace_target", skipped="pynvmetcp.target does not exist yet")
            return
        tnqn = "nqn.2024-01.io.pynvmetcp:userspace-target"
        proc = subprocess.Popen([sys.executable, "-m", "pynvmetcp", "target", "--listen",
                                 "127.0.0.1:4430", "--subsystem", tnqn, "--namespace", "mem:64M"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            import socket
            deadline = time.monotonic() + 300  # a Python start under emulation: 14 s idle, more loaded
            while True:
                try:
                    socket.create_connection(("127.0.0.1", 4430), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("target did not start: "
                                           + (proc.stdout.read() if proc.poll() is not None else "timeout"))
                    time.sleep(0.5)
            c = kernel.connect("127.0.0.1", 4430, tnqn, nr_io_queues=1)
            info = settle(c.info, lambda i: bool(i.namespaces) and bool(i.namespaces[0].device))
            ns = info.namespaces[0] if info.namespaces else None
            res = {"name": c.name, "state": info.state,
                   "device": ns.device if ns else None, "size": ns.size if ns else None}
            if ns:
                with open("/tmp/disk_u.img", "wb") as f:
                    f.truncate(1 << 20)
                pattern = os.urandom(64 * 1024)
                Path("/tmp/pattern").write_bytes(pattern)
                sh(f"dd if=/tmp/pattern of={ns.device} bs=4096 count=16 oflag=direct status=none")
                sh(f"dd if={ns.device} of=/tmp/readback bs=4096 count=16 iflag=direct status=none")
                res["dd_equal"] = Path("/tmp/readback").read_bytes() == pattern
                if ns.uuid:
                    res["by_uuid"] = kernel.find_block_device(uuid=ns.uuid)
            idc = c.identify()
            res["mn"] = idc.mn
            res["subnqn"] = idc.subnqn
            res["smart_ok"] = c.smart_log() is not None
            res["already"] = kernel.connect("127.0.0.1", 4430, tnqn).already_connected
            c.disconnect()
            res["left"] = sorted(os.listdir("/sys/class/nvme"))
            emit("userspace_target", **res)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    @step("dmesg")
    def _():
        emit("dmesg", lines=[ln for ln in sh("dmesg", check=False).splitlines()
                             if "nvme" in ln][-40:])

    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
