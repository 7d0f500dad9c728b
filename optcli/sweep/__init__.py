"""`optcli sweep`: many recipes times a matrix of `--set` overrides, each cell an ordinary `optcli run`
in its own process, on a local process pool or a Ray cluster."""
