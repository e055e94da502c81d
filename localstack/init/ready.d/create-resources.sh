#!/usr/bin/env bash
# LocalStack init hook (ready stage), run inside the container of ../../docker-compose.yml:
# creates eventflow's resources for stage EVENTFLOW_STAGE (default dev) with awslocal, in
# AWS_DEFAULT_REGION (eu-central-1 there). The same as ../../create_resources.py, which does
# it with boto3 on the path without Docker: change both together. Resources as in
# ../../../template.yaml and ../../../infra/README.md. Safe to run again.
set -euo pipefail

stage="${EVENTFLOW_STAGE:-dev}"
sender="${EVENTFLOW_SENDER:-events@eventflow.example}"
table="eventflow-$stage"

if ! awslocal dynamodb describe-table --table-name "$table" >/dev/null 2>&1; then
  awslocal dynamodb create-table \
    --table-name "$table" \
    --billing-mode PAY_PER_REQUEST \
    --attribute-definitions \
    AttributeName=pk,AttributeType=S AttributeName=sk,AttributeType=S \
    AttributeName=due_shard,AttributeType=S AttributeName=due_at,AttributeType=S \
    AttributeName=runs_pk,AttributeType=S AttributeName=runs_sk,AttributeType=S \
    --key-schema AttributeName=pk,KeyType=HASH AttributeName=sk,KeyType=RANGE \
    --global-secondary-indexes '[
      {"IndexName": "due",
       "KeySchema": [{"AttributeName": "due_shard", "KeyType": "HASH"},
                     {"AttributeName": "due_at", "KeyType": "RANGE"}],
       "Projection": {"ProjectionType": "KEYS_ONLY"}},
      {"IndexName": "runs",
       "KeySchema": [{"AttributeName": "runs_pk", "KeyType": "HASH"},
                     {"AttributeName": "runs_sk", "KeyType": "RANGE"}],
       "Projection": {"ProjectionType": "INCLUDE",
                      "NonKeyAttributes": ["status", "workflow", "version"]}}
    ]' >/dev/null
  awslocal dynamodb wait table-exists --table-name "$table"
  echo "eventflow: table $table created"
fi
if ! awslocal dynamodb describe-time-to-live --table-name "$table" | grep -q '"ENABL'; then
  awslocal dynamodb update-time-to-live --table-name "$table" \
    --time-to-live-specification Enabled=true,AttributeName=expires_at >/dev/null
fi

# queue NAME VISIBILITY [fifo]: NAME (plus .fifo) and its dead-letter queue NAME-dlq, after 5
# receives. FifoQueue only at creation; the other attributes set apart, so that an existing
# queue converges to them.
queue() {
  local name="$1" visibility="$2" suffix="" create=() common
  common='"MessageRetentionPeriod": "1209600"'
  if [ "${3:-}" = fifo ]; then
    suffix=.fifo
    create=(--attributes FifoQueue=true)
    common="$common, \"ContentBasedDeduplication\": \"false\""
  fi
  local dlq_url dlq_arn url
  dlq_url=$(awslocal sqs create-queue --queue-name "$name-dlq$suffix" "${create[@]}" \
    --query QueueUrl --output text)
  awslocal sqs set-queue-attributes --queue-url "$dlq_url" --attributes "{$common}"
  dlq_arn=$(awslocal sqs get-queue-attributes --queue-url "$dlq_url" \
    --attribute-names QueueArn --query Attributes.QueueArn --output text)
  url=$(awslocal sqs create-queue --queue-name "$name$suffix" "${create[@]}" \
    --query QueueUrl --output text)
  # RedrivePolicy is a JSON document inside the JSON of the attributes: escaped quotes.
  awslocal sqs set-queue-attributes --queue-url "$url" --attributes "{$common,
    \"VisibilityTimeout\": \"$visibility\",
    \"RedrivePolicy\": \"{\\\"deadLetterTargetArn\\\": \\\"$dlq_arn\\\", \\\"maxReceiveCount\\\": \\\"5\\\"}\"}"
  echo "eventflow: queue $url"
}

# Visibility timeouts as in template.yaml: six times each function's timeout.
queue "eventflow-$stage-coordinator" 180 fifo
queue "eventflow-$stage-tasks-email" 181
queue "eventflow-$stage-tasks-http" 361
queue "eventflow-$stage-tasks-records" 181
queue "eventflow-$stage-tasks-notify" 181
queue "eventflow-$stage-tasks-flow" 181

awslocal ses verify-email-identity --email-address "$sender"
echo "eventflow: SES identity $sender verified"
