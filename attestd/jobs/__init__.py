"""The classification job queue: leases for workers (remote or in-node), and the wait for
a result that a pict-rs check may do within its deadline."""
