"""Random specs for the fuzz and soundness tests (tests/test_fuzz.py, tests/test_soundness.py).

`strategies` draws specs, valid by construction and then optionally broken by one
mutation; `oracle` checks what specc says about them and what it generates;
`known` lists the bugs the fuzzer found that are not fixed yet, so the random tests
steer around them while tests/regressions/ keeps each one as an xfail reproducer.
"""
