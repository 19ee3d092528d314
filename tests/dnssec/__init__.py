"""
A real DNSSEC world on loopback (Knot DNS signing, unbound validating) for
the tests of DNSSEC-dependent code such as DANE: see L{tests.dnssec.world}.
"""
