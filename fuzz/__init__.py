"""`python -m fuzz`: hostile Kafka records against a real processor, and proof it survived them.

Every record sent is remembered as (partition, offset, category); the processor's contract says
each one is answered by a result or a dead letter naming it in its `source_*` headers. The run
proves: every record accounted for, no partition stalled, the processor never restarted, and the
ledger audit clean. See docs/fuzzing.md.
"""
