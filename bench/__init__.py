"""jaxconv's benchmark suite: `python -m bench` (see `bench/__main__.py`).

Modules, one job each:
  cases    the table of named cases (`QUICK`, `FULL`, `select`)
  problem  a case -> inputs, the function under test, the lax reference, geometry
  check    correctness against the reference, relative to its scale
  timing   AOT compile (time, XLA temp memory), warm-up, adaptive repeats
  peers    other libraries on the same cases, where installed
  runner   case x method: check first, then time (also per pass); ratios to lax
  perpass  per case: fastest method per pass, best per-pass combination, auto vs them
  report   rich table, JSON, markdown, README insertion
  plots    PNGs: time vs kernel size, speed-up over lax
  sharding `--sharding`: collective bytes and per-device memory on 8 host devices
"""
