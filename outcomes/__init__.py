"""Call outcomes: Kamailio's per-attempt and end-of-call events, aggregated per minute.

`records` holds the parsed events (plain dataclasses, no Django); `ingest` the per-process
aggregator that deduplicates and batches them; `store` the upserts into `OutcomeBucket`
and `OutcomeCount`; `prune` the retention.
"""
