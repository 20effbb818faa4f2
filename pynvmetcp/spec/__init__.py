"""Floor 1: NVMe and NVMe/TCP wire formats as construct definitions. Pure data, no I/O.

Modules: ``pdu`` (common header and the nine PDU types), ``sqe``/``cqe`` (queue entries and each
command's view), ``fabrics`` (Connect data, properties), ``identify``, ``logpages``, ``opcodes``
(every numeric identifier) and ``status`` (status and FES names).
"""
