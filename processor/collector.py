"""Python's cyclic garbage collector, set for a long-running processor.

Each transfer allocates thousands of short-lived objects (events, dicts, rows), and the caches
hold tens of thousands of long-lived aggregates. With Python's defaults (a young collection
every 700 allocations) the collector ran 2,700 times in `bench.hot_path` (9,000 transfers in
one process), and its full collections walked every cached aggregate again: 3.9 s of CPU, about
a fifth of the whole (timed with `gc.callbacks`; a py-spy profile spreads that time over
whatever function allocated when a collection began, so it looked flat). With what start-up
built frozen out of collections and a young collection every 10,000 allocations: 1.2 s; every
50,000: 0.4 s (9 collections of about 40 ms each), the same peak memory (178 MB) all three.
"""

import gc

# Allocations (less deallocations) between young collections; Python's default is 700. Most
# objects of a batch are freed by their reference counts before a collection ever sees them.
YOUNG_EVERY = 50_000


def tune() -> None:
    """For a process's own entry point, once set up: not for a process that runs many of them
    (a test worker), where what `freeze` keeps would never be collected."""
    gc.collect()
    gc.freeze()  # modules, settings, connections: never garbage, and no longer walked by each full collection
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_EVERY, older, oldest)
