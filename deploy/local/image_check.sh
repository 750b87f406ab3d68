#!/usr/bin/env bash
# The image, proven without a Docker engine: run `cloudwallet run` from localhost/cloudwallet:dev
# (built with buildah, docs/operations.md) against the local stack, as the image's user, with
# the processor's own secrets mounted read-only; publish one request from the host and wait for
# its result. Needs buildah, root, and the stack up (`make up`). Run from the repository's root:
#     deploy/local/image_check.sh
set -euo pipefail

IMAGE=${IMAGE:-localhost/cloudwallet:dev}
HEALTH_PORT=${HEALTH_PORT:-19464}
BUILDAH=(buildah --storage-driver vfs)
STACK=(python3 deploy/local/stack.py)
secrets=$("${STACK[@]}" env-file --as processor | xargs dirname)
work=$(mktemp -d)
ctr=""

cleanup() {
  pkill -TERM -u 10001 -f "cloudwallet run" 2>/dev/null || true
  sleep 2
  [ -n "$ctr" ] && "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Copies the image's user (10001) can read; libpq wants its passfile 0600 and its own.
mkdir "$work/secrets"
cp "$secrets/kafka-processor.password" "$work/secrets/kafka-password"
cp "$secrets/tls/ca.pem" "$work/secrets/kafka-ca.pem"
cp "$secrets/signing-master.password" "$work/secrets/signing-master"
cp "$secrets/pgpass-cloudwallet_processor" "$work/secrets/pgpass"
chown -R 10001:10001 "$work/secrets"
chmod 600 "$work/secrets"/*

ctr=$("${BUILDAH[@]}" from --pull-never "$IMAGE")
in=/etc/cloudwallet/secrets
echo "image-check: starting the processor from $IMAGE (log $work/processor.log)"
# chroot isolation shares the host's network: the stack's 127.0.0.1 ports are the container's.
"${BUILDAH[@]}" run --isolation chroot -v "$work/secrets:$in:ro" \
  --env KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 --env CLOUDWALLET_KAFKA_SECURITY_PROTOCOL=SASL_SSL \
  --env CLOUDWALLET_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 --env CLOUDWALLET_KAFKA_USERNAME=processor \
  --env CLOUDWALLET_KAFKA_PASSWORD_FILE=$in/kafka-password --env CLOUDWALLET_KAFKA_CA_FILE=$in/kafka-ca.pem \
  --env CLOUDWALLET_SIGNING_MASTER_KEY_FILE=$in/signing-master --env CLOUDWALLET_HEALTH_PORT="$HEALTH_PORT" \
  --env "DATABASE_URL=postgresql+psycopg://cloudwallet_processor@127.0.0.1:15432/cloudwallet?passfile=$in/pgpass" \
  "$ctr" -- cloudwallet run --no-migrate >"$work/processor.log" 2>&1 &

for _ in $(seq 60); do
  if curl -sf "127.0.0.1:$HEALTH_PORT/health/ready" >/dev/null; then break; fi
  sleep 1
done
curl -sf "127.0.0.1:$HEALTH_PORT/health/ready" || { echo "image-check: the processor never became ready"; tail -20 "$work/processor.log"; exit 1; }
echo
ps -eo uid=,args= | grep "[c]loudwallet run" | grep -v buildah || true  # uid 10001: the image's user

eval "$("${STACK[@]}" env --as admin)"
token=$(.venv/bin/cloudwallet signing-key create --operator --label image-check | grep -o 'cws_[A-Za-z0-9_-]*' | head -1)
eval "$("${STACK[@]}" env --as client)"
project="img$(date +%s)"
answer=$(CLOUDWALLET_SIGNING_KEY=$token .venv/bin/cloudwallet send \
  "{\"type\":\"project.create\",\"reference_id\":\"$project-create\",\"project_id\":\"$project\",\"name\":\"Image check\"}")
echo "$answer"
grep -q '"status": "Completed"' <<<"$answer" || { echo "image-check: FAILED (no Completed result)"; tail -20 "$work/processor.log"; exit 1; }
echo "image-check: the image's processor answered Completed"
