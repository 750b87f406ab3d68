"""The HTTP gateway: every Cloud Wallet endpoint over HTTP.

Reads come straight from PostgreSQL (SQLAlchemy Core on the ledger's tables); writes are
published to Kafka through `processor.client.WalletClient` and answered with the processor's
result. Access is by API key (`X-Api-Key`), see `processor.gateway.api_keys`. See docs/gateway.md.

Where things are, in the order a request meets them:

* application.py - `create_app(settings)`: the FastAPI app, its lifespan (database engine, Kafka
  client) and its seams (`backends=`, `client=`: backends.py); `cloudwallet gateway` (cli.py)
  serves it with uvicorn;
* body_limit.py - the request body limit (413), before anything else;
* access.py - the key (401) and its reach (403), checked before the request is read;
* routes/ - one module per resource, each an APIRouter; a handler is a few lines;
* dependencies.py - what the routes share: parameters, reaches, paging, "exists or 404" and the
  write step (build the contract request, publish it, wait for its result);
* bodies.py - request bodies and the answers that are not a processor's Result;
* reads.py, keys.py, signing_key_store.py - the database side (reads, API keys, signing keys);
* errors.py - every error's shape and code; gateway_settings.py - the gateway's settings.
"""
