"""cffi build script (API mode) for the kernel fallback: ``pynvmetcp.kernel._nvme``.

Why API mode: the passthrough structs and the ioctl request numbers are taken from the C compiler
reading <linux/nvme_ioctl.h>, so a layout or numbering mistake on our side cannot exist (an ABI-mode
cdef would restate them by hand). Why small C wrappers instead of calling ``ioctl`` directly: ioctl
is variadic, and returning ``-errno`` from C keeps errno from being clobbered between the call and
Python reading it.

It is compiled by ``pip install`` (setup.py's ``cffi_modules``). The extension is *optional*: on a
machine without a C compiler or linux headers the install still succeeds, the userspace host and
target work, and the kernel passthrough says what is missing when used.

Build by hand: ``python native/build_nvme.py`` (writes the module next to the package sources).
"""
from __future__ import annotations

from cffi import FFI

ffibuilder = FFI()

ffibuilder.cdef(r"""
struct nvme_passthru_cmd {
    uint8_t  opcode;
    uint8_t  flags;
    uint16_t rsvd1;
    uint32_t nsid;
    uint32_t cdw2;
    uint32_t cdw3;
    uint64_t metadata;
    uint64_t addr;
    uint32_t metadata_len;
    uint32_t data_len;
    uint32_t cdw10;
    uint32_t cdw11;
    uint32_t cdw12;
    uint32_t cdw13;
    uint32_t cdw14;
    uint32_t cdw15;
    uint32_t timeout_ms;
    uint32_t result;
    ...;
};

struct nvme_passthru_cmd64 {
    uint8_t  opcode;
    uint8_t  flags;
    uint16_t rsvd1;
    uint32_t nsid;
    uint32_t cdw2;
    uint32_t cdw3;
    uint64_t metadata;
    uint64_t addr;
    uint32_t metadata_len;
    uint32_t data_len;
    uint32_t cdw10;
    uint32_t cdw11;
    uint32_t cdw12;
    uint32_t cdw13;
    uint32_t cdw14;
    uint32_t cdw15;
    uint32_t timeout_ms;
    uint64_t result;
    ...;
};

#define NVME_IOCTL_ID ...
#define NVME_IOCTL_ADMIN_CMD ...
#define NVME_IOCTL_IO_CMD ...
#define NVME_IOCTL_RESET ...
#define NVME_IOCTL_SUBSYS_RESET ...
#define NVME_IOCTL_RESCAN ...
#define NVME_IOCTL_ADMIN64_CMD ...
#define NVME_IOCTL_IO64_CMD ...

#define FIONREAD ...

/* Each returns the ioctl's result (>= 0: an NVMe status for passthrough) or -errno. */
int pynvme_admin(int fd, struct nvme_passthru_cmd *cmd);
int pynvme_io(int fd, struct nvme_passthru_cmd *cmd);
int pynvme_admin64(int fd, struct nvme_passthru_cmd64 *cmd);
int pynvme_io64(int fd, struct nvme_passthru_cmd64 *cmd);
int pynvme_ioctl_none(int fd, unsigned long request);
int pynvme_ioctl_ptr(int fd, unsigned long request, void *arg);
""")

ffibuilder.set_source(
    "pynvmetcp.kernel._nvme",
    r"""
#include <errno.h>
#include <sys/ioctl.h>
#include <linux/nvme_ioctl.h>

static int pynvme_ret(int r) { return r < 0 ? -errno : r; }

static int pynvme_admin(int fd, struct nvme_passthru_cmd *cmd)
{ return pynvme_ret(ioctl(fd, NVME_IOCTL_ADMIN_CMD, cmd)); }
static int pynvme_io(int fd, struct nvme_passthru_cmd *cmd)
{ return pynvme_ret(ioctl(fd, NVME_IOCTL_IO_CMD, cmd)); }
static int pynvme_admin64(int fd, struct nvme_passthru_cmd64 *cmd)
{ return pynvme_ret(ioctl(fd, NVME_IOCTL_ADMIN64_CMD, cmd)); }
static int pynvme_io64(int fd, struct nvme_passthru_cmd64 *cmd)
{ return pynvme_ret(ioctl(fd, NVME_IOCTL_IO64_CMD, cmd)); }
static int pynvme_ioctl_none(int fd, unsigned long request)
{ return pynvme_ret(ioctl(fd, request)); }
static int pynvme_ioctl_ptr(int fd, unsigned long request, void *arg)
{ return pynvme_ret(ioctl(fd, request, arg)); }
""",
    optional=True,  # a failed compile must not fail `pip install` (see the module docstring)
)

if __name__ == "__main__":
    import os

    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ffibuilder.compile(tmpdir="native/_build", verbose=True)
