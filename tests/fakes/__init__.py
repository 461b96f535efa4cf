"""In-tree fakes that real clients talk to over loopback (see `fixtures.py` for pytest use)."""
