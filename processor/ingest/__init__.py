"""`cloudwallet ingest`: bulk loading a JSONL or CSV file of requests through Kafka.

One job per module, so that the benchmark and the tests can use a part without the rest:

* `reading` — the file's lines, lazily, into validated requests (`Outgoing`) or `RejectedLine`s;
* `pipeline` — the `Ingestor`: publish with a window in flight, match results (through the
  client library's `ResultsFollower`);
* `summary` — `IngestSummary`, and `FailedRequests` that accounts every outcome into it;
* `progress` — the progress display on stderr (rich on a terminal, plain lines elsewhere);
* `command` — the CLI: `register`, `run_command`, `ingest_file` (its docstring is the user's
  guide, printed by `cloudwallet ingest --help`).
"""
