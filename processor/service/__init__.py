"""The service layer: one batch of raw Kafka records in, a committed batch report out.

`records` turns raw records into requests (or refusals); `batch` applies a batch through a unit
of work given from outside and decides every record's answer. No Kafka client here: the
entry points (processor/stream, bench.micro) hand records in and publish what comes out.
"""
