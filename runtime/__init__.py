"""The policy layer, free of Ray: limiter, cache gate, breaker, engine, metering, the ledger (record, sink, journal, store, index, view), routing policy and keys. Imports only ``llm``."""
