#!/usr/bin/env python3
"""confluent-client: Confluent's own Python client against a schema registry.

With confluent-kafka 2.13 (the tutorial's pin) it registers the shop's
schemas (schemas/*.avsc) under subjects of its own, reads them back by
subject, by version and by ID, evolves one compatibly and once not, has a
JSON Schema refused, writes and reads a record in the Confluent wire format
through AvroSerializer and AvroDeserializer, and deletes its subjects. It
stops at the first answer that differs and exits 1; its last line is
"confluent-client: ok" when all held.

    python3 -m pip install 'confluent-kafka[avro,schemaregistry]==2.13.0'
    SCHEMA_REGISTRY_URL=http://localhost:8081 scripts/confluent-client.py

REGISTRY_BASIC_AUTH=user:password signs in (secure mode). docs/registry.md
shows a run.
"""
import json
import os
import pathlib
import sys

import confluent_kafka
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

ROOT = pathlib.Path(__file__).resolve().parent.parent
PREFIX = f"confluent-client-{os.getpid()}-"


def check(ok, what):
    if not ok:
        print(f"confluent-client: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"  ok  {what}")


def refused(call, status, code, what):
    try:
        call()
    except SchemaRegistryError as e:
        check(e.http_status_code == status and e.error_code == code,
              f"{what}: {e.http_status_code} {e.error_code} ({e.error_message})")
        return
    check(False, f"{what}: accepted, want {status} {code}")


def main():
    url = os.environ.get("SCHEMA_REGISTRY_URL", "http://localhost:8081")
    conf = {"url": url}
    if os.environ.get("REGISTRY_BASIC_AUTH"):
        conf["basic.auth.user.info"] = os.environ["REGISTRY_BASIC_AUTH"]
    client = SchemaRegistryClient(conf)
    print(f"confluent-client: confluent-kafka {confluent_kafka.version()} against {url}")

    texts = {p.stem: p.read_text() for p in sorted((ROOT / "schemas").glob("*.avsc"))}
    check(len(texts) >= 4, f"{len(texts)} schemas in schemas/")
    subjects = []
    for name, text in texts.items():
        subject = PREFIX + name + "-value"
        subjects.append(subject)
        sid = client.register_schema(subject, Schema(text, "AVRO"))
        again = client.register_schema(subject, Schema(text, "AVRO"))
        found = client.lookup_schema(subject, Schema(text, "AVRO"))
        latest = client.get_latest_version(subject)
        by_id = client.get_schema(sid)
        check(again == sid and found.schema_id == sid and latest.version == 1 and latest.schema_id == sid
              and json.loads(by_id.schema_str) == json.loads(text),
              f"{name}: registered as ID {sid}, the same again, found by lookup, latest version and ID")

    order = PREFIX + "order_created-value"
    evolved = json.loads(texts["order_created"])
    evolved["fields"].append({"name": "note", "type": "string", "default": ""})
    evolved = json.dumps(evolved)
    check(client.test_compatibility(order, Schema(evolved, "AVRO")), "a field with a default is compatible")
    sid2 = client.register_schema(order, Schema(evolved, "AVRO"))
    check(client.get_versions(order) == [1, 2] and client.get_version(order, 2).schema_id == sid2,
          f"the evolved schema is version 2, ID {sid2}")
    broken = json.loads(evolved)
    broken["fields"].append({"name": "coupon", "type": "string"})
    broken = json.dumps(broken)
    check(not client.test_compatibility(order, Schema(broken, "AVRO")), "a field without a default is not")
    refused(lambda: client.register_schema(order, Schema(broken, "AVRO")), 409, 409, "registering it")
    refused(lambda: client.register_schema(PREFIX + "json-value", Schema('{"type":"object"}', "JSON")),
            422, 42201, "a JSON Schema")

    # A client of its own: the first caches the latest version it saw.
    topic, fresh = PREFIX + "order_created", SchemaRegistryClient(conf)
    serializer = AvroSerializer(fresh, evolved, conf={"auto.register.schemas": False, "use.latest.version": True})
    deserializer = AvroDeserializer(fresh)
    ctx = SerializationContext(topic, MessageField.VALUE)
    value = {"order_id": "8b0e4c4e-7f1a-4d52-9d8e-2b1f0c3a5e61", "payment_id": "0f6c1b7e-3c2d-4e5f-8a9b-1c2d3e4f5a6b",
             "user_id": 42, "items": [{"name": "MacBook", "unit_price_cents": 199900, "quantity": 1}],
             "total_cents": 199900, "status": "created", "created_at": 1700000000000, "note": "gift"}
    wire = serializer(value, ctx)
    check(wire[0] == 0 and int.from_bytes(wire[1:5], "big") == sid2, f"a record in the wire format with ID {sid2}")
    back = deserializer(wire, ctx)
    back["created_at"] = int(back["created_at"].timestamp() * 1000) if hasattr(back["created_at"], "timestamp") else back["created_at"]
    back["order_id"], back["payment_id"] = str(back["order_id"]), str(back["payment_id"])
    check(back == value, "read back as written")

    for subject in subjects:
        client.delete_subject(subject)
        client.delete_subject(subject, permanent=True)
    check(not [s for s in client.get_subjects() if s.startswith(PREFIX)], "its subjects deleted")
    print("confluent-client: ok")


if __name__ == "__main__":
    main()
