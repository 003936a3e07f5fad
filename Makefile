# The shop's commands. `make help` lists them.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
SHOP  := $(BIN)/shop

export KAFKA_BROKERS       ?= localhost:9092,localhost:9093,localhost:9094
export SCHEMA_REGISTRY_URL ?= http://localhost:8081

.PHONY: help build run cluster services test vet topics schemas poison

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

build: ## build the shop binary into bin/
	@$(GO) build -o $(SHOP) ./services/cmd/shop

run: build ## embedded 3-broker Kafka + registry + the four services, no Docker
	@exec $(SHOP) run

cluster: build ## embedded 3-broker Kafka + registry only
	@exec $(SHOP) cluster

services: build ## the four services against KAFKA_BROKERS / SCHEMA_REGISTRY_URL
	@exec $(SHOP) services

topics: build ## create the topics (idempotent)
	@$(SHOP) topics

schemas: build ## register every schema, compatibility BACKWARD (idempotent)
	@$(SHOP) schemas

poison: ## send poison pills and prove each one reached the DLQ
	@$(GO) run ./scripts/poison

test: ## every test that needs nothing but Go
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...

vet: ## go vet
	$(GO) vet ./...

.PHONY: kafka-up kafka-down
kafka-up: ## real Apache Kafka without Docker: 3 KRaft JVMs on :9092-9094, registry on :8081, topics
	@scripts/kafka-up

kafka-down: ## stop what kafka-up started, by PID (V=1 also deletes its data)
	@V="$(V)" scripts/kafka-down
