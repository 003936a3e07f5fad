// Package kafkatest is the integration suite against a real Apache Kafka
// cluster: the shop's core flow end to end, a broker killed with SIGKILL
// while payments flow, an order instance fenced by a newer one with the same
// transactional ID, and a consumer-group rebalance while transactions are
// open. Every test reads its outputs with read_committed and holds them to
// one order per payment and one email per order.
//
// The tests carry the build tag kafka, so `go test ./...` and `make test`
// never run them. Run them against `make kafka-up`:
//
//	make kafka-up
//	make test-kafka          # go test -tags kafka ./services/kafkatest/
//	make kafka-down
//
// KAFKA_BROKERS and SCHEMA_REGISTRY_URL say where the cluster and registry
// are. On a cluster of SECURE=1 make kafka-up, run with SECURE=1: the tests'
// own clients are the admin, every service its own principal, and the
// refusal tests check the ACLs. The broker-kill test needs the PID files that scripts/kafka-up
// writes under .run/kafka, and restarts the killed node with scripts/kafka-up.
// Each test judges only the payments it sent, read from the offsets where the
// topics ended when it began, so earlier data on the topics does not matter.
package kafkatest
