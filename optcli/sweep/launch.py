"""The entry of a cell's process: `optcli <args>` that receives SIGTERM when the process that started it
dies (a SIGKILLed sweep driver or Ray worker), so no orphaned run keeps its run folder locked."""

from __future__ import annotations

import os
import signal
import sys

PARENT_ENV = "OPTCLI_SWEEP_PARENT"


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        return


def main() -> None:
    parent = int(os.environ.pop(PARENT_ENV, "0") or 0)
    _die_with_parent()
    # The sweep stops a cell with SIGINT; a driver started from a background shell passes SIGINT
    # down ignored, and optcli keeps an ignored SIGINT ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if parent and os.getppid() != parent:  # the starter died before prctl took effect
        sys.exit(128 + signal.SIGTERM)
    sys.argv = ["optcli", *sys.argv[1:]]
    from optcli.cli import main as optcli_main

    optcli_main()


if __name__ == "__main__":
    main()
