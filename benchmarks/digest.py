"""Question: what does a CRC32C data digest cost next to copying the same bytes once?

Why it matters: with data digests negotiated, every payload byte is checksummed once on each side
(``pynvmetcp.wire.crc``, the ``crc32c`` package), on top of the copy from the socket. If the CRC
runs at least half as fast as a memcpy of the same buffer, digests at most add a copy's worth of
work per byte. Candidate: ``wire.crc.crc32c(buf)``; baseline: ``bytearray(buf)`` (one allocation
and one memcpy). Sizes: 4 KiB (a block), 64 KiB, 1 MiB. Goal: ≥ 0.5× memcpy at ≥ 64 KiB.

Second table, when ``google-crc32c`` is installed: our CRC32C against ``google_crc32c.value`` on
the same buffers, and on a 72-byte header (the per-PDU header digest).

Last lines: ``RATIO digest_vs_memcpy_4k/64k/1m=…`` (CRC throughput / memcpy throughput) and, when
measured, ``RATIO crc32c_vs_google_64k=…``.

Measured so far (benchmarks/results/digest.json): CRC32C runs at 0.5-0.75× memcpy (≈25-28 GB/s
against ≈40-46 GB/s at 64 KiB-1 MiB; the 64 KiB ratio moved between 0.47 and 0.63 from run to run
on a shared machine), i.e. at the goal; crc32c and google-crc32c are within 10 % of each other.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import Report, compare, parse_args  # noqa: E402
from pynvmetcp.wire.crc import crc32c  # noqa: E402

SIZES = [("4k", 4 << 10), ("64k", 64 << 10), ("1m", 1 << 20)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    report = Report("digest", "CRC32C (wire.crc) vs memcpy of the same buffer; "
                    "crc32c vs google-crc32c", args)
    scale = (0.02 if args.quick else 1.0) * args.scale
    rng = random.Random(0)
    assert crc32c(b"123456789") == 0xE3069283

    for label, size in SIZES:
        buf = rng.randbytes(size)
        # ~20 MiB per round per side in a full run, whatever the size
        number = max(1, int((20 << 20) // size * scale))
        row = report.add(compare(f"{label} buffer", ("crc32c", lambda b=buf: crc32c(b)),
                                 ("memcpy (bytearray)", lambda b=buf: bytearray(b)),
                                 rounds=args.rounds, number=number, bytes_per_op=size))
        report.ratio(f"digest_vs_memcpy_{label}", row.ratio)

    try:
        import google_crc32c
    except ImportError:
        report.note("google-crc32c is not installed (pip install 'pynvmetcp[bench]'): "
                    "crc32c vs google-crc32c not measured")
    else:
        gvalue = google_crc32c.value
        report.note(f"google-crc32c implementation: {google_crc32c.implementation}")
        for label, size in [("72 B header", 72)] + SIZES:
            buf = rng.randbytes(size)
            assert gvalue(buf) == crc32c(buf)
            number = max(1, int(min((20 << 20) // size, 200_000) * scale))
            name = label if size == 72 else f"{label} buffer"
            row = report.add(compare(name, ("crc32c", lambda b=buf: crc32c(b)),
                                     ("google-crc32c", lambda b=buf: gvalue(b)),
                                     rounds=args.rounds, number=number, bytes_per_op=size))
            if size == 64 << 10:
                report.ratio("crc32c_vs_google_64k", row.ratio)
            if size == 72:
                report.ratio("crc32c_vs_google_header", row.ratio)

    report.note("ratios are rates: > 1 means the candidate (left column) is faster")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
