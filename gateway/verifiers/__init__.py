"""
Domain verification: the verifier interface, the chain that runs
verifiers as a trust policy says, and one module per built-in method.
"""
