"""Where a cell's `optcli run` process runs: `local` (a process pool on this machine) or `ray`."""
