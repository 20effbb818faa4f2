"""Question: how close do our framer and fast codec come to plain ``struct`` on the hot PDUs, and
what does compiling construct buy for the structures that stay on construct?

Why it matters: every command crosses the framer and the codec at least twice (CapsuleCmd and
CapsuleResp, plus R2T/H2CData or C2HData for data), so their per-PDU cost bounds IOPS per core.
The baseline is the least a Python decoder can do on the same bytes: ``struct.unpack_from`` of the
common header and PSH per PDU, and a copy of the payload out of the receive buffer (the framer
delivers payloads in their own buffer too) — no validation, no digest handling, no objects. For
encoding, ``struct.pack_into`` of the header into a reused buffer (payloads are not copied by
either side: the codec hands them to ``sendmsg`` as they are). The goal is ≥ 0.5× plain struct.

The non-hot structures (Identify, discovery log entries, Connect) are parsed with construct; the
second table compares ``Struct.compile()`` with the interpreted struct on the same bytes.

Last lines: ``RATIO codec_decode_vs_struct=…`` and ``RATIO codec_encode_vs_struct=…`` (geometric
means over the five hot PDU types; > 1: ours faster), then the construct ratios.

Measured so far (CPython 3.11, 2 vCPUs; benchmarks/results/codec.json): encode 0.53× plain struct
(0.41-0.70 per type; 0.19× before the enum lookups left the codec), decode 0.30× (0.23× before
the frequent headers were checked by value, 0.15× before that): what remains per PDU is mostly
building the 15-field PDU record and the framer's state machine — the 0.5× goal is met for
encoding, not for decoding.
The framer is still ~14× faster than construct's Pdu.parse; compiling construct gives 2-6×.
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import Report, compare, geomean, parse_args  # noqa: E402
from pynvmetcp.spec import fabrics, identify, logpages, pdu, sqe  # noqa: E402
from pynvmetcp.wire import codec  # noqa: E402
from pynvmetcp.wire.framer import Framer  # noqa: E402

CH = struct.Struct("<BBBBI")
CMD_PSH = struct.Struct("<64s")
RESP_PSH = struct.Struct("<IIHHHH")
XFER_PSH = struct.Struct("<HHII")
HDR_CMD = struct.Struct("<BBBBI64s")
HDR_RESP = struct.Struct("<BBBBIIIHHHH")
HDR_XFER = struct.Struct("<BBBBIHHII4x")

PAYLOAD = 4096


def plain_decode(buf: bytes) -> list:
    """The floor: header fields by struct.unpack_from, payload copied out, nothing checked."""
    mv = memoryview(buf)
    out = []
    off, end = 0, len(buf)
    unpack_ch = CH.unpack_from
    while off < end:
        t, flags, hlen, pdo, plen = unpack_ch(mv, off)
        if t == 4:
            psh = CMD_PSH.unpack_from(mv, off + 8)
        elif t == 5:
            psh = RESP_PSH.unpack_from(mv, off + 8)
        else:
            psh = XFER_PSH.unpack_from(mv, off + 8)
        data = bytearray(mv[off + pdo:off + plen]) if pdo else b""
        out.append((t, flags, psh, data))
        off += plen
    return out


# ---- the five hot PDUs: (name, receiver, encoder for the candidate, pack_into for the baseline)

SQE = sqe.ReadWrite.build({"opcode": 2, "flags": 0x40, "cid": 7, "nsid": 1, "cdw2": 0,
                           "cdw3": 0, "mptr": 0,
                           "dptr": {"address": 0, "length": PAYLOAD, "sgl_id": 0x5A},
                           "slba": 1234, "nlb": 7, "control": 0, "dsmgmt": 0, "reftag": 0,
                           "apptag": 0, "appmask": 0})
DATA = bytes(range(256)) * (PAYLOAD // 256)


def _hot(i: int):
    """One PDU of each hot type with command id ``i``: (name, receiver, bytes)."""
    return [
        ("CapsuleCmd", "controller", codec.encode(codec.capsule_cmd(SQE))),
        ("CapsuleResp", "host", codec.encode(codec.capsule_resp(i, 0, sqhd=i & 31, sqid=1))),
        ("H2CData", "controller", codec.encode(codec.h2c_data(i, i, 0, DATA, last=True))),
        ("C2HData", "host", codec.encode(codec.c2h_data(i, 0, DATA, last=True))),
        ("R2T", "host", codec.encode(codec.r2t(i, i, 0, PAYLOAD))),
    ]


ENCODERS = {
    "CapsuleCmd": (lambda i: codec.capsule_cmd(SQE),
                   lambda b, i: HDR_CMD.pack_into(b, 0, 4, 0, 72, 0, 72, SQE)),
    "CapsuleResp": (lambda i: codec.capsule_resp(i, 0, sqhd=5, sqid=1),
                    lambda b, i: HDR_RESP.pack_into(b, 0, 5, 0, 24, 0, 24, 0, 0, 5, 1, i, 0)),
    "H2CData": (lambda i: codec.h2c_data(i, i, 0, DATA, last=True),
                lambda b, i: HDR_XFER.pack_into(b, 0, 6, 4, 24, 24, 24 + PAYLOAD, i, i, 0,
                                                PAYLOAD)),
    "C2HData": (lambda i: codec.c2h_data(i, 0, DATA, last=True),
                lambda b, i: HDR_XFER.pack_into(b, 0, 7, 4, 24, 24, 24 + PAYLOAD, i, 0, 0,
                                                PAYLOAD)),
    "R2T": (lambda i: codec.r2t(i, i, 0, PAYLOAD),
            lambda b, i: HDR_XFER.pack_into(b, 0, 9, 0, 24, 0, 24, i, i, 0, PAYLOAD)),
}


def _check_same_work(name: str, batch: bytes, receiver: str) -> None:
    """Both decoders must read the same fields from the batch, or the comparison means nothing."""
    ours = Framer(receiver).feed(batch)
    plain = plain_decode(batch)
    assert len(ours) == len(plain), name
    for p, (t, flags, psh, data) in zip(ours, plain):
        assert p.pdu_type == t and p.flags == flags and bytes(p.data) == bytes(data), name


def _check_encoders() -> None:
    """The codec and the pack_into baseline produce the same header bytes."""
    for name, (enc, pack) in ENCODERS.items():
        buf = bytearray(72)
        pack(buf, 3)
        header = codec.encode(enc(3))
        hlen = header[2]
        assert header[:hlen] == bytes(buf[:hlen]), name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    report = Report("codec", "hot-PDU decode/encode: framer and codec vs plain struct; "
                    "construct compiled vs interpreted", args)
    per_batch = 32 if args.quick else 256
    scale = (0.05 if args.quick else 1.0) * args.scale

    def n(full: int) -> int:
        return max(1, int(full * scale))

    # ---- decode ----
    decode_ratios = []
    for k, (name, receiver, _) in enumerate(_hot(0)):
        batch = b"".join(_hot(i)[k][2] for i in range(per_batch))
        _check_same_work(name, batch, receiver)
        framer = Framer(receiver)
        feed = framer.feed
        size = len(batch) // per_batch
        row = report.add(compare(
            f"decode {name}", ("Framer.feed", lambda: feed(batch)),
            ("struct.unpack_from", lambda: plain_decode(batch)), rounds=args.rounds,
            number=n(60 if size < 1000 else 12), ops_per_call=per_batch, unit="PDU"))
        decode_ratios.append(row.ratio)

    # ---- encode ----
    _check_encoders()
    encode_ratios = []
    for name, (enc, pack) in ENCODERS.items():
        buf = bytearray(72)
        cids = range(100)

        def candidate(enc=enc):
            for i in cids:
                enc(i)

        def baseline(pack=pack):
            for i in cids:
                pack(buf, i)

        row = report.add(compare(f"encode {name}", ("wire.codec", candidate),
                                 ("struct.pack_into", baseline), rounds=args.rounds,
                                 number=n(200), ops_per_call=len(cids), unit="PDU"))
        encode_ratios.append(row.ratio)

    # ---- why the hot path is not construct: the same decode through spec.pdu.Pdu ----
    cmd = _hot(0)[0][2]
    framer = Framer("controller")
    report.add(compare("decode CapsuleCmd", ("Framer.feed", lambda: framer.feed(cmd)),
                       ("construct Pdu.parse", lambda: pdu.Pdu.parse(cmd)),
                       rounds=args.rounds, number=n(3000), unit="PDU"))
    report.ratio("codec_decode_vs_construct", report.rows[-1].ratio)

    # ---- construct compiled vs interpreted ----
    ctrl = identify.IdentifyController.parse(bytes(4096))
    ctrl.update(dict(sn="PYNVMETCP0001", mn="pynvmetcp", fr="0.1", ioccsz=260, iorcsz=1,
                     subnqn="nqn.2014-08.org.example:x", nn=32, mdts=8, ver=0x10400))
    entry = logpages.DiscoveryLogEntry.parse(bytes(1024))
    entry.update(dict(trtype=3, adrfam=1, subtype=2, trsvcid="4420", traddr="192.168.1.10",
                      subnqn="nqn.2014-08.org.example:x", asqsz=32, cntlid=0xFFFF))
    connect = sqe.Connect.parse(bytes(64))
    connect.update(dict(opcode=0x7F, fctype=1, cid=1, sqsize=31, kato=5000, qid=0))
    cdata = fabrics.ConnectData.parse(bytes(1024))
    cdata.update(dict(
        cntlid=0xFFFF, subnqn="nqn.2014-08.org.example:x",
        hostnqn="nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"))
    compiled_ratios = []
    for label, struct_, value, number in [
            ("IdentifyController", identify.IdentifyController, ctrl, 60),
            ("DiscoveryLogEntry", logpages.DiscoveryLogEntry, entry, 400),
            ("Connect SQE", sqe.Connect, connect, 1500),
            ("ConnectData", fabrics.ConnectData, cdata, 600)]:
        raw = struct_.build(value)
        fast = struct_.compile()
        assert fast.build(fast.parse(raw)) == raw == struct_.build(struct_.parse(raw))
        for op, c_fn, i_fn in [
                ("parse", lambda f=fast, r=raw: f.parse(r), lambda s=struct_, r=raw: s.parse(r)),
                ("build", lambda f=fast, v=value: f.build(v),
                 lambda s=struct_, v=value: s.build(v))]:
            row = report.add(compare(f"{op} {label}", ("construct compiled", c_fn),
                                     ("interpreted", i_fn), rounds=args.rounds,
                                     number=n(number), unit="op"))
            compiled_ratios.append(row.ratio)

    report.note(f"payload of H2CData/C2HData: {PAYLOAD} bytes, copied out by both decoders; "
                f"{per_batch} PDUs per feed")
    report.note("ratios are rates: > 1 means the candidate (left column) is faster")
    report.ratio("construct_compiled_vs_interpreted", geomean(compiled_ratios))
    for (name, _, _), r in zip(_hot(0), decode_ratios):
        report.ratio(f"codec_decode_vs_struct_{name}", r)
    for name, r in zip(ENCODERS, encode_ratios):
        report.ratio(f"codec_encode_vs_struct_{name}", r)
    report.ratio("codec_decode_vs_struct", geomean(decode_ratios))
    report.ratio("codec_encode_vs_struct", geomean(encode_ratios))
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
