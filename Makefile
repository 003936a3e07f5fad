# The shop's commands. `make help` lists them.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
SHOP  := $(BIN)/shop

# KAFKA_BROKERS and SCHEMA_REGISTRY_URL pass through from the environment;
# every program defaults them to localhost:9092-9094 and :8081. They are not
# set here because chaos and bench use their own cluster when they are unset.

.PHONY: help build run cluster services test vet topics schemas poison chaos

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

build: ## build the shop binary into bin/
	@$(GO) build -o $(SHOP) ./services/cmd/shop

run: build ## embedded 3-broker Kafka + registry + mail server (inbox :8025) + the four services, no Docker; data in .run/embedded, the services' state in .run/state (FRESH=1 starts empty)
	@FRESH="$(FRESH)" exec $(SHOP) run

cluster: build ## embedded 3-broker Kafka + registry only; data in .run/ (FRESH=1 starts empty)
	@FRESH="$(FRESH)" exec $(SHOP) cluster

services: build ## the four services against KAFKA_BROKERS / SCHEMA_REGISTRY_URL
	@exec $(SHOP) services

topics: ## create the topics (idempotent); go run ./scripts/topics also lists, describes, deletes
	@$(GO) run ./scripts/topics create

schemas: ## register every schema, compatibility BACKWARD (idempotent; refuses all if one is incompatible)
	@$(GO) run ./scripts/register

poison: ## send poison pills and prove each one reached the DLQ
	@$(GO) run ./scripts/poison

chaos: build ## exactly-once under faults (N=10000 FAULTS=kill,pause,partition KILLS=20 PAUSES=10 SEED= MODE=at-least-once for the control; BROKER_KILLS=false on kafka-up; VIA=http through POST /payment, POSTS=3 each posted three times, KEYS=0 its control)
	@$(GO) run ./scripts/chaos $(if $(N),-n $(N)) $(if $(FAULTS),-faults $(FAULTS)) $(if $(KILLS),-kills $(KILLS)) $(if $(PAUSES),-pauses $(PAUSES)) $(if $(SEED),-seed $(SEED)) $(if $(MODE),-mode $(MODE)) $(if $(BROKER_KILLS),-broker-kills=$(BROKER_KILLS)) $(if $(VIA),-via $(VIA)) $(if $(KEYS),-keys=$(if $(filter 0,$(KEYS)),false,true)) $(if $(POSTS),-posts $(POSTS))

test: ## every test that needs nothing but Go
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...

vet: ## go vet
	$(GO) vet ./...

.PHONY: kafka-up kafka-down
kafka-up: ## real Apache Kafka without Docker: 3 KRaft JVMs on :9092-9094, registry on :8081, topics, Mailpit on :1025/:8025
	@scripts/kafka-up

kafka-down: ## stop what kafka-up started, by PID (V=1 also deletes its data)
	@V="$(V)" scripts/kafka-down

# The Docker stack, infra/docker-compose.yml: the same host ports as `make run`,
# so `make schemas`, `make poison` and the scripts work against it unchanged.
COMPOSE := docker compose -f infra/docker-compose.yml$(if $(filter 1,$(SECURE)), -f infra/docker-compose.secure.yml)

.PHONY: up down logs ps
up: ## Docker: 3 KRaft brokers, Schema Registry, Kafka UI, Mailpit and the services; waits until healthy (SECURE=1: SASL/SCRAM and ACLs)
	$(COMPOSE) up -d --build
	@infra/wait-healthy.sh kafka1 kafka2 kafka3 schema-registry
	@line=$$($(COMPOSE) logs --no-log-prefix topics 2>/dev/null | grep '^topics:' | tail -n 1); \
	  if [ -z "$$line" ]; then echo "up: the topics job did not report; see: make logs S=topics" >&2; exit 1; fi; \
	  echo "up: $$line"
	@if [ "$(filter 1,$(SECURE))" = 1 ]; then \
	  line=$$($(COMPOSE) logs --no-log-prefix acls 2>/dev/null | grep '^acls:' | tail -n 1); \
	  if [ -z "$$line" ]; then echo "up: the acls job did not report; see: SECURE=1 make logs S=acls" >&2; exit 1; fi; \
	  echo "up: $$line"; \
	fi
	@infra/wait-healthy.sh payment order email analytics kafka-ui mailpit
	@line=$$($(COMPOSE) logs --no-log-prefix schemas 2>/dev/null | grep '^schemas:' | tail -n 1); \
	  if [ -z "$$line" ]; then echo "up: the schemas job did not report; see: make logs S=schemas" >&2; exit 1; fi; \
	  echo "up: $$line"
	@echo "up: Kafka UI        http://localhost:8080"
	@echo "up: Mailpit         http://localhost:8025 (SMTP localhost:1025)"
	@echo "up: Schema Registry http://localhost:8081"
	@echo "up: Kafka           localhost:9092,localhost:9093,localhost:9094"
	@echo "up: services        payment :8000  order :8001  email :8002  analytics :8003"
	@if [ "$(filter 1,$(SECURE))" = 1 ]; then echo "up: security        SASL/SCRAM-SHA-512 and ACLs on Kafka, basic auth on the registry; host tools need SECURE=1"; fi
	@echo "ready: kafka=localhost:9092,localhost:9093,localhost:9094 registry=http://localhost:8081 ui=http://localhost:8080 payment=http://localhost:8000 order=http://localhost:8001 email=http://localhost:8002 analytics=http://localhost:8003 smtp=localhost:1025 inbox=http://localhost:8025/$(if $(filter 1,$(SECURE)), security=SASL/SCRAM-SHA-512+ACLs)"

down: ## stop the Docker stack (V=1 also deletes its volumes, so the Kafka data)
	$(COMPOSE) down --remove-orphans$(if $(filter 1,$(V)), -v)

logs: ## follow the Docker stack's logs (S=order for one service)
	$(COMPOSE) logs -f --tail=100 $(S)

ps: ## the Docker stack's containers and their health
	$(COMPOSE) ps -a

# The tutorial's tools (docs/tools.md). They talk to KAFKA_BROKERS,
# SCHEMA_REGISTRY_URL and PAYMENT_URL, so they work on make run, make cluster
# and make up alike.
.PHONY: flood simulate overload lag
flood: ## write payments straight to Kafka: N=1000, or MODE=intense (5000) / MODE=extreme (10000)
	@$(GO) run ./scripts/flood $(if $(MODE),--mode $(MODE)) $(if $(N),-n $(N))

simulate: ## Black Friday over HTTP: N=100 payments to POST /payment, C=20 at a time (RETRIES=2: each again with its Idempotency-Key)
	@$(GO) run ./scripts/simulate -n $(or $(N),100) -c $(or $(C),20) $(if $(RETRIES),-retries $(RETRIES))

overload: ## open-loop POST /payment, each payment at its time: RATE=2000/s for FOR=10s, clients give up after GIVE_UP=2s; then, on Kafka, charges without a 200 and 200s without an order
	@$(GO) run ./scripts/overload $(if $(RATE),-rate $(RATE)) $(if $(FOR),-for $(FOR)) $(if $(GIVE_UP),-give-up $(GIVE_UP))

lag: ## lag per consumer group, topic and partition, with members (MONITOR=1 refreshes every 2s)
	@$(GO) run ./scripts/lag $(if $(filter 1,$(MONITOR)),--monitor)

# The benchmarks (BENCHMARKS.md): against KAFKA_BROKERS when it is set in the
# environment, else on an embedded cluster of their own. ARGS passes flags,
# such as ARGS="-only eos,e2e -txn-interval 10ms" (go run ./scripts/bench -h).
.PHONY: bench
bench: build ## ingest, exactly-once vs at-least-once, end-to-end latency, flood drain, peak RSS
	@$(GO) run ./scripts/bench $(ARGS)

.PHONY: test-kafka
test-kafka: ## the integration suite against real Kafka at KAFKA_BROKERS (after make kafka-up)
	KAFKA_BROKERS=$${KAFKA_BROKERS:-localhost:9092,localhost:9093,localhost:9094} \
	  $(GO) test -tags kafka -count=1 -timeout 8m -v ./services/kafkatest/
