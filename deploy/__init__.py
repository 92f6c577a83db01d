"""How Gruppetto runs: the ``gruppetto`` command line and the one-machine embedded default."""
