"""A strict in-repo stand-in of the SNAP Java API as esa_snappy exposes it.

SNAP cannot be installed where the tests run, so :mod:`.jpy_api` mirrors
exactly the part of SNAP's Java API that :mod:`snap_operators.snap.adapter`
uses (names, signatures and the behaviour that matters for results), and
drives Python operators the way SNAP's GPF does (:func:`.jpy_api.run_operator`).
Pass the module itself as the adapter's ``api``.
"""
