"""Impair a link for tests (this kernel has no netem): run inside the link's namespace as
``python impair.py DEV LOSS DUP REORDER SLOW_RATE`` (rates per mille, SLOW_RATE in bit/s).

Installs an HTB root qdisc with a fast class 1:1 and a slow class 1:2, and the tc egress
program impair.c, then exits: the qdisc and filter keep the program; deleting the namespace
removes all of it."""

from __future__ import annotations

import sys
from pathlib import Path

from bcc import BPF
from pyroute2 import IPRoute


def main(dev: str, loss: int, dup: int, reorder: int, slow_rate: int) -> None:
    src = Path(__file__).with_name("impair.c")
    bpf = BPF(
        src_file=str(src).encode(),
        cflags=[f"-DLOSS={loss}", f"-DDUP={dup}", f"-DREORDER={reorder}"],
    )
    fn = bpf.load_func(b"impair", BPF.SCHED_CLS)
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=dev)[0]
        ipr.tc("add", "htb", idx, 0x10000, default=0x1)
        ipr.tc("add-class", "htb", idx, 0x10001, parent=0x10000, rate="1gbit", ceil="1gbit")
        ipr.tc(
            "add-class", "htb", idx, 0x10002, parent=0x10000, rate=f"{slow_rate}bit",
            ceil=f"{slow_rate}bit",
        )  # fmt: skip
        ipr.tc("add", "clsact", idx)
        ipr.tc(
            "add-filter", "bpf", idx, ":1", fd=fn.fd, name=fn.name, parent="ffff:fff3",
            classid=1, direct_action=True,
        )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], *(int(x) for x in sys.argv[2:6]))
