"""The HTTP gateway: every Cloud Wallet endpoint over HTTP.

Reads come straight from PostgreSQL (SQLAlchemy Core on the ledger's tables); writes are
published to Kafka through `processor.client.WalletClient` and answered with the processor's
result. Access is by API key (`X-Api-Key`), see `processor.gateway.keys`.

`create_app(settings)` in `processor.gateway.app` builds the FastAPI app;
`cloudwallet gateway` serves it with uvicorn. See docs/gateway.md.
"""
