#!/usr/bin/env python3
"""Creates eventflow's AWS resources in the emulators, for a manual session without Docker.

    bash localstack/start.sh && . ~/.cache/eventflow/emulators/env.sh
    ~/.cache/eventflow/emulators/localstack-venv/bin/python localstack/create_resources.py

The resources are those of ../template.yaml and ../infra/README.md, for one stage
(EVENTFLOW_STAGE, default `dev`): the table `eventflow-<stage>` (indexes `due` and `runs`, time
to live on `expires_at`), the queues `eventflow-<stage>-coordinator.fifo` and
`eventflow-<stage>-tasks-<family>`, each with its dead-letter queue (`...-dlq`, after 5
receives), and the verified SES identity `events@eventflow.example` (EVENTFLOW_SENDER).
`init/ready.d/create-resources.sh` makes the same with awslocal in the Docker container:
change both together.

Endpoints, region and credentials come from the standard variables start.sh prints
(AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION, ...). Idempotent: what exists is kept.
On success, prints `export` lines naming the resources the way the functions read them
(EVENTFLOW_TABLE, EVENTFLOW_*_QUEUE_URL, EVENTFLOW_SENDER), so `eval "$(python ...)"` works.
Needs boto3, which both emulator venvs hold.
"""

import json
import os
import sys

import boto3

STAGE = os.environ.get("EVENTFLOW_STAGE", "dev")
SENDER = os.environ.get("EVENTFLOW_SENDER", "events@eventflow.example")
# The region boto3 reads is AWS_DEFAULT_REGION; the Rust SDK reads AWS_REGION.
REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-central-1"
FAMILIES = ["email", "http", "records", "notify", "flow"]
# Visibility timeouts and retention as in template.yaml (six times each function's timeout).
VISIBILITY = {"coordinator": 180, "email": 181, "http": 361, "records": 181, "notify": 181, "flow": 181}
RETENTION = 1209600  # 14 days
MAX_RECEIVE_COUNT = 5


def log(message):
    print(f"create_resources: {message}", file=sys.stderr)


def create_table(dynamodb, name):
    try:
        dynamodb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": a, "AttributeType": "S"}
                for a in ["pk", "sk", "due_shard", "due_at", "runs_pk", "runs_sk"]
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "due",
                    "KeySchema": [
                        {"AttributeName": "due_shard", "KeyType": "HASH"},
                        {"AttributeName": "due_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                },
                {
                    "IndexName": "runs",
                    "KeySchema": [
                        {"AttributeName": "runs_pk", "KeyType": "HASH"},
                        {"AttributeName": "runs_sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {
                        "ProjectionType": "INCLUDE",
                        "NonKeyAttributes": ["status", "workflow", "version"],
                    },
                },
            ],
        )
        log(f"table {name} created")
    except dynamodb.exceptions.ResourceInUseException:
        log(f"table {name} exists")
    dynamodb.get_waiter("table_exists").wait(TableName=name)
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": "expires_at", "Enabled": True},
        )


def create_queue(sqs, name, visibility, fifo):
    """The queue `name` (plus `.fifo`) with its dead-letter queue; returns the queue's URL."""
    suffix = ".fifo" if fifo else ""
    # FifoQueue only at creation (it cannot change); the rest set apart, so that an existing
    # queue converges to these attributes instead of CreateQueue refusing the difference.
    kind = {"FifoQueue": "true"} if fifo else {}
    common = {"MessageRetentionPeriod": str(RETENTION)}
    if fifo:
        common["ContentBasedDeduplication"] = "false"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq{suffix}", Attributes=kind)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=dlq_url, Attributes=common)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    attributes = common | {
        "VisibilityTimeout": str(visibility),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
        ),
    }
    url = sqs.create_queue(QueueName=f"{name}{suffix}", Attributes=kind)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    log(f"queue {name}{suffix} (dead-letter queue {name}-dlq{suffix})")
    return url


def main():
    session = boto3.session.Session(region_name=REGION)
    dynamodb = session.client("dynamodb")
    sqs = session.client("sqs")
    ses = session.client("ses")

    table = f"eventflow-{STAGE}"
    create_table(dynamodb, table)

    exports = {"EVENTFLOW_STAGE": STAGE, "EVENTFLOW_TABLE": table}
    exports["EVENTFLOW_COORDINATOR_QUEUE_URL"] = create_queue(
        sqs, f"eventflow-{STAGE}-coordinator", VISIBILITY["coordinator"], fifo=True
    )
    for family in FAMILIES:
        exports[f"EVENTFLOW_TASKS_{family.upper()}_QUEUE_URL"] = create_queue(
            sqs, f"eventflow-{STAGE}-tasks-{family}", VISIBILITY[family], fifo=False
        )

    # LocalStack verifies at once; SendEmail from an unverified address is refused.
    ses.verify_email_identity(EmailAddress=SENDER)
    log(f"SES identity {SENDER} verified")
    exports["EVENTFLOW_SENDER"] = SENDER

    for key, value in exports.items():
        print(f"export {key}={value}")


if __name__ == "__main__":
    main()
