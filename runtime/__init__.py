"""Ray runtime: limiter, cache gate, routing policy, ledger writer, and the Runtime that starts or joins Ray."""
