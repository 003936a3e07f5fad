package compose

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const composeFile = "../docker-compose.yml"

func load(t *testing.T, paths ...string) *types.Project {
	t.Helper()
	p, err := Load(t.Context(), paths...)
	if err != nil {
		t.Fatalf("load %v: %v", paths, err)
	}
	return p
}

func TestStackKeepsItsInvariants(t *testing.T) {
	p := load(t, composeFile)
	for _, problem := range Check(p) {
		t.Error(problem)
	}
	// What the README, the Makefile and the scripts name.
	roles := map[string][]string{}
	for _, name := range slices.Sorted(maps.Keys(stack)) {
		roles[stack[name].area] = append(roles[stack[name].area], name)
	}
	want := map[string][]string{
		"brokers": {"kafka1", "kafka2", "kafka3"}, "registry": {"schema-registry"}, "ui": {"kafka-ui"},
		"topics": {"topics"}, "schemas": {"schemas"}, "services": {"analytics", "email", "order", "payment"}, "mail": {"mailpit"},
	}
	if !maps.EqualFunc(roles, want, slices.Equal) {
		t.Errorf("the stack's services by role = %v, want %v", roles, want)
	}
	if want := "kafka1:29092,kafka2:29092,kafka3:29092"; inNetwork != want {
		t.Errorf("in-network listeners = %v, want %v", inNetwork, want)
	}
	if want := "http://schema-registry:8081"; registryURL != want {
		t.Errorf("registry URL = %s, want %s", registryURL, want)
	}
	for port, want := range map[int]string{8000: "payment", 8001: "order", 8002: "email", 8003: "analytics", 8080: "kafka-ui", 8081: "schema-registry", 9092: "kafka1", 9093: "kafka2", 9094: "kafka3",
		1025: "mailpit", 8025: "mailpit"} {
		if got := publishedBy(p, port); got != want {
			t.Errorf("host port %d is published by %q, want %q", port, got, want)
		}
	}
}

// publishedBy names the service that publishes TCP port port on the host, or "".
func publishedBy(p *types.Project, port int) string {
	for name, svc := range p.Services {
		for _, published := range svc.Ports {
			if published.Published == strconv.Itoa(port) && published.Protocol != "udp" {
				return name
			}
		}
	}
	return ""
}

// model is the canonical YAML tree of a compose file, to edit a copy of.
type model map[string]any

// loadModel is the model of files, each over the ones before it; of
// composeFile if none.
func loadModel(t *testing.T, files ...string) model {
	t.Helper()
	if len(files) == 0 {
		files = []string{composeFile}
	}
	opts, err := projectOptions(files...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := opts.LoadModel(t.Context()) // anchors merged, variables substituted, paths absolute
	if err != nil {
		t.Fatalf("load model: %v", err)
	}
	// Files merged give environments as lists of NAME=value: as maps, the
	// edits below read and set them alike.
	for _, svc := range model(m).services() {
		svc := svc.(map[string]any)
		if list, ok := svc["environment"].([]any); ok {
			env := map[string]any{}
			for _, item := range list {
				name, value, ok := strings.Cut(item.(string), "=")
				env[name] = value
				if !ok {
					env[name] = nil
				}
			}
			svc["environment"] = env
		}
	}
	return m
}

func (m model) services() map[string]any { return m["services"].(map[string]any) }

// remove deletes a service, and what depends on it, as one would, so the file still loads.
func (m model) remove(name string) {
	delete(m.services(), name)
	for _, svc := range m.services() {
		if deps, ok := svc.(map[string]any)["depends_on"].(map[string]any); ok {
			delete(deps, name)
		}
	}
}

func (m model) service(t *testing.T, name string) map[string]any {
	t.Helper()
	svc, ok := m.services()[name].(map[string]any)
	if !ok {
		t.Fatalf("the compose file has no service %q", name)
	}
	return svc
}

func (m model) env(t *testing.T, service string) map[string]any {
	t.Helper()
	env, ok := m.service(t, service)["environment"].(map[string]any)
	if !ok {
		t.Fatalf("service %q has no environment", service)
	}
	return env
}

func (m model) setEnv(t *testing.T, value string, name string, services ...string) {
	t.Helper()
	for _, s := range services {
		m.env(t, s)[name] = value
	}
}

// project writes m to a compose file of its own and loads it back.
func (m model) project(t *testing.T) *types.Project {
	t.Helper()
	data, err := json.Marshal(escape(map[string]any(m))) // JSON is YAML
	if err != nil {
		t.Fatalf("marshal edited model: %v", err)
	}
	path := filepath.Join(t.TempDir(), "docker-compose.yml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return load(t, path)
}

// escape is v with every $ of its strings written $$, as in a compose file:
// the model holds them substituted, and loading the copy substitutes again.
func escape(v any) any {
	switch v := v.(type) {
	case string:
		return strings.ReplaceAll(v, "$", "$$")
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, item := range v {
			out[k] = escape(item)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			out[i] = escape(item)
		}
		return out
	}
	return v
}

// reportsAll reports each of want that is part of no problem.
func reportsAll(t *testing.T, problems []string, want ...string) {
	t.Helper()
	for _, want := range want {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("no problem reports %q; got:\n  %s", want, strings.Join(problems, "\n  "))
		}
	}
}

// The copy is faithful: unedited, it passes like the original, the open
// stack's and the secure one's. Without this the cases below could pass
// for the wrong reason.
func TestUneditedCopiesPass(t *testing.T) {
	for _, tc := range []struct {
		name  string
		load  func(*testing.T) model
		check func(*types.Project) []string
	}{
		{"UneditedCopyPasses", func(t *testing.T) model { return loadModel(t) }, Check},
		{"UneditedSecureCopyPasses", loadSecureModel, CheckSecure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, problem := range tc.check(tc.load(t).project(t)) {
				t.Error(problem)
			}
		})
	}
}

func TestCheckReportsEachViolation(t *testing.T) {
	cases := []struct {
		name string
		edit func(t *testing.T, m model)
		want []string // each must be part of some reported problem
	}{{
		name: "a broker removed",
		edit: func(t *testing.T, m model) { m.remove("kafka3") },
		want: []string{
			"brokers: no kafka3 service",
			"health: schema-registry must depend on kafka3 with condition service_healthy",
		},
	}, {
		name: "an image without a tag",
		edit: func(t *testing.T, m model) { m.service(t, "kafka-ui")["image"] = "kafbat/kafka-ui" },
		want: []string{`images: kafka-ui image "kafbat/kafka-ui" has no tag`},
	}, {
		name: "an image on latest",
		edit: func(t *testing.T, m model) {
			m.service(t, "schema-registry")["image"] = "confluentinc/cp-schema-registry:latest"
		},
		want: []string{"schema-registry image \"confluentinc/cp-schema-registry:latest\" is pinned to latest", "share one platform version"},
	}, {
		name: "Confluent images of two versions",
		edit: func(t *testing.T, m model) { m.service(t, "kafka2")["image"] = "confluentinc/cp-kafka:7.9.0" },
		want: []string{"Confluent images must share one platform version"},
	}, {
		name: "a Dockerfile base image unpinned",
		edit: func(t *testing.T, m model) {
			path := filepath.Join(t.TempDir(), "Dockerfile")
			if err := os.WriteFile(path, []byte("FROM golang AS build\nFROM build\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			m.service(t, "topics")["build"].(map[string]any)["dockerfile"] = path
		},
		want: []string{`images: topics builds from Dockerfile, whose base image "golang" has no tag`},
	}, {
		name: "a host port published twice",
		edit: func(t *testing.T, m model) {
			m.service(t, "email")["ports"].([]any)[0].(map[string]any)["published"] = "8000"
		},
		want: []string{"ports: email publishes [127.0.0.1:8000:8002], want [127.0.0.1:8002:8002]"},
	}, {
		name: "a host port open to the network",
		edit: func(t *testing.T, m model) {
			delete(m.service(t, "kafka-ui")["ports"].([]any)[0].(map[string]any), "host_ip")
		},
		want: []string{"ports: kafka-ui publishes [:8080:8080], want [127.0.0.1:8080:8080] (on 127.0.0.1 only"},
	}, {
		name: "a service pointed at localhost",
		edit: func(t *testing.T, m model) { m.setEnv(t, HostBrokers, "KAFKA_BROKERS", "order") },
		want: []string{`services: order has KAFKA_BROKERS="localhost:9092,localhost:9093,localhost:9094", want kafka1:29092,kafka2:29092,kafka3:29092`},
	}, {
		name: "a service's registry at localhost",
		edit: func(t *testing.T, m model) { m.setEnv(t, "http://localhost:8081", "SCHEMA_REGISTRY_URL", "analytics") },
		want: []string{`services: analytics has SCHEMA_REGISTRY_URL="http://localhost:8081", want http://schema-registry:8081`},
	}, {
		name: "a service missing a broker",
		edit: func(t *testing.T, m model) { m.setEnv(t, "kafka1:29092,kafka2:29092", "KAFKA_BROKERS", "email") },
		want: []string{`services: email has KAFKA_BROKERS="kafka1:29092,kafka2:29092", want kafka1:29092,kafka2:29092,kafka3:29092`},
	}, {
		name: "two cluster IDs",
		edit: func(t *testing.T, m model) { m.setEnv(t, "MkU3OEVBNTcwNTJENDM2Qk", "CLUSTER_ID", "kafka2") },
		want: []string{`brokers: kafka2 has CLUSTER_ID="MkU3OEVBNTcwNTJENDM2Qk", want 0kMKn7ncRTWJwjnnJofGQw`},
	}, {
		name: "two nodes with one ID",
		edit: func(t *testing.T, m model) { m.setEnv(t, "2", "KAFKA_NODE_ID", "kafka3") },
		want: []string{`brokers: kafka3 has KAFKA_NODE_ID="2", want 3`},
	}, {
		name: "a quorum of two voters",
		edit: func(t *testing.T, m model) {
			m.setEnv(t, "1@kafka1:29093,2@kafka2:29093", "KAFKA_CONTROLLER_QUORUM_VOTERS", brokers...)
		},
		want: []string{
			`brokers: kafka1 has KAFKA_CONTROLLER_QUORUM_VOTERS="1@kafka1:29093,2@kafka2:29093", want 1@kafka1:29093,2@kafka2:29093,3@kafka3:29093`,
			`brokers: kafka3 has KAFKA_CONTROLLER_QUORUM_VOTERS="1@kafka1:29093,2@kafka2:29093", want 1@kafka1:29093,2@kafka2:29093,3@kafka3:29093`,
		},
	}, {
		name: "nodes that disagree on the quorum",
		edit: func(t *testing.T, m model) {
			m.setEnv(t, "1@kafka1:29093,2@kafka2:29093,3@kafka3:29092", "KAFKA_CONTROLLER_QUORUM_VOTERS", "kafka3")
		},
		want: []string{`brokers: kafka3 has KAFKA_CONTROLLER_QUORUM_VOTERS="1@kafka1:29093,2@kafka2:29093,3@kafka3:29092", want 1@kafka1:29093,2@kafka2:29093,3@kafka3:29093`},
	}, {
		name: "a broker only",
		edit: func(t *testing.T, m model) { m.setEnv(t, "broker", "KAFKA_PROCESS_ROLES", "kafka1") },
		want: []string{`kafka1 has KAFKA_PROCESS_ROLES="broker", want broker,controller`},
	}, {
		name: "auto topic creation on",
		edit: func(t *testing.T, m model) { m.setEnv(t, "true", "KAFKA_AUTO_CREATE_TOPICS_ENABLE", "kafka1") },
		want: []string{`kafka1 has KAFKA_AUTO_CREATE_TOPICS_ENABLE="true", want false`},
	}, {
		name: "replication lowered",
		edit: func(t *testing.T, m model) {
			m.setEnv(t, "1", "KAFKA_DEFAULT_REPLICATION_FACTOR", "kafka1")
			m.setEnv(t, "1", "KAFKA_MIN_INSYNC_REPLICAS", "kafka2")
			m.setEnv(t, "1", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "kafka3")
			m.setEnv(t, "1", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "kafka1")
			delete(m.env(t, "kafka2"), "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR")
		},
		want: []string{
			`kafka1 has KAFKA_DEFAULT_REPLICATION_FACTOR="1", want 3`,
			`kafka2 has KAFKA_MIN_INSYNC_REPLICAS="1", want 2`,
			`kafka3 has KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1", want 3`,
			`kafka1 has KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1", want 3`,
			`kafka2 has KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="", want 2`,
		},
	}, {
		name: "a host listener not published",
		edit: func(t *testing.T, m model) { delete(m.service(t, "kafka3"), "ports") },
		want: []string{"ports: kafka3 publishes [], want [127.0.0.1:9094:9094]"},
	}, {
		name: "an in-network listener at localhost",
		edit: func(t *testing.T, m model) {
			m.setEnv(t, "PLAINTEXT://localhost:29092,PLAINTEXT_HOST://localhost:9092", "KAFKA_ADVERTISED_LISTENERS", "kafka1")
		},
		want: []string{`brokers: kafka1 has KAFKA_ADVERTISED_LISTENERS="PLAINTEXT://localhost:29092,PLAINTEXT_HOST://localhost:9092", want PLAINTEXT://kafka1:29092,PLAINTEXT_HOST://localhost:9092`},
	}, {
		name: "the registry on one broker",
		edit: func(t *testing.T, m model) {
			m.setEnv(t, "PLAINTEXT://kafka1:29092", "SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", "schema-registry")
		},
		want: []string{`registry: schema-registry has SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS="PLAINTEXT://kafka1:29092", want PLAINTEXT://kafka1:29092,PLAINTEXT://kafka2:29092,PLAINTEXT://kafka3:29092`},
	}, {
		name: "a UI that does not know the registry",
		edit: func(t *testing.T, m model) { delete(m.env(t, "kafka-ui"), "KAFKA_CLUSTERS_0_SCHEMAREGISTRY") },
		want: []string{`ui: kafka-ui has KAFKA_CLUSTERS_0_SCHEMAREGISTRY="", want http://schema-registry:8081`},
	}, {
		name: "a registry without a health check",
		edit: func(t *testing.T, m model) { delete(m.service(t, "schema-registry"), "healthcheck") },
		want: []string{"health: schema-registry has no health check"},
	}, {
		name: "a service started before its brokers are healthy",
		edit: func(t *testing.T, m model) {
			m.service(t, "payment")["depends_on"].(map[string]any)["kafka1"].(map[string]any)["condition"] = types.ServiceConditionStarted
		},
		want: []string{"health: payment must depend on kafka1 with condition service_healthy"},
	}, {
		name: "a service that does not wait for the topics",
		edit: func(t *testing.T, m model) {
			delete(m.service(t, "analytics")["depends_on"].(map[string]any), "topics")
		},
		want: []string{"services: analytics must depend on topics with condition service_completed_successfully"},
	}, {
		name: "broker data inside the container",
		edit: func(t *testing.T, m model) { delete(m.service(t, "kafka2"), "volumes") },
		want: []string{"volumes: kafka2 mounts [], want [volume kafka2-data:/var/lib/kafka/data]"},
	}, {
		name: "broker data on a bind mount",
		edit: func(t *testing.T, m model) {
			m.service(t, "kafka1")["volumes"] = []any{map[string]any{"type": "bind", "source": t.TempDir(), "target": "/var/lib/kafka/data"}}
		},
		want: []string{"volumes: kafka1 mounts [bind /"},
	}, {
		name: "two brokers on one volume",
		edit: func(t *testing.T, m model) {
			m.service(t, "kafka2")["volumes"].([]any)[0].(map[string]any)["source"] = "kafka1-data"
		},
		want: []string{"volumes: kafka2 mounts [volume kafka1-data:/var/lib/kafka/data], want [volume kafka2-data:/var/lib/kafka/data]"},
	}, {
		name: "a service on the wrong port",
		edit: func(t *testing.T, m model) { m.setEnv(t, "9000", "PORT", "order") },
		want: []string{`services: order has PORT="9000", want 8001`},
	}, {
		name: "broker data moved off its volume",
		edit: func(t *testing.T, m model) { m.setEnv(t, "/tmp/kafka", "KAFKA_LOG_DIRS", "kafka3") },
		want: []string{`brokers: kafka3 has KAFKA_LOG_DIRS="/tmp/kafka", want it unset (the data stays in /var/lib/kafka/data`},
	}, {
		name: "an image of another repository",
		edit: func(t *testing.T, m model) { m.service(t, "kafka-ui")["image"] = "provectuslabs/kafka-ui:v0.7.2" },
		want: []string{`images: kafka-ui runs "provectuslabs/kafka-ui:v0.7.2", want an image of kafbat/kafka-ui`},
	}, {
		name: "the shop's image built by no one",
		edit: func(t *testing.T, m model) {
			delete(m.service(t, "topics"), "build")
			m.service(t, "topics")["pull_policy"] = "never"
		},
		want: []string{"images: payment runs blackfriday-kafka/shop:local with pull_policy never, but no service builds it"},
	}, {
		name: "a service the stack does not state",
		edit: func(t *testing.T, m model) {
			m.services()["prometheus"] = map[string]any{"image": "prom/prometheus:v3.5.0"}
		},
		want: []string{"services: prometheus is not part of the stack"},
	}, {
		name: "a job that restarts",
		edit: func(t *testing.T, m model) { m.service(t, "topics")["restart"] = "on-failure" },
		want: []string{`topics: topics has restart "on-failure"; a one-shot job must not restart`},
	}, {
		name: "no schemas job",
		edit: func(t *testing.T, m model) { m.remove("schemas") },
		want: []string{
			"schemas: no schemas service",
			"services: payment must depend on schemas with condition service_completed_successfully",
		},
	}, {
		name: "a schemas job that runs something else",
		edit: func(t *testing.T, m model) { m.service(t, "schemas")["command"] = []any{"services"} },
		want: []string{"schemas: schemas runs `shop services`, want `shop schemas`"},
	}, {
		name: "a schemas job at the wrong registry",
		edit: func(t *testing.T, m model) { m.setEnv(t, "http://localhost:8081", "SCHEMA_REGISTRY_URL", "schemas") },
		want: []string{`schemas: schemas has SCHEMA_REGISTRY_URL="http://localhost:8081", want http://schema-registry:8081`},
	}, {
		name: "a schemas job started before the registry is healthy",
		edit: func(t *testing.T, m model) {
			m.service(t, "schemas")["depends_on"].(map[string]any)["schema-registry"].(map[string]any)["condition"] = types.ServiceConditionStarted
		},
		want: []string{"health: schemas must depend on schema-registry with condition service_healthy"},
	}, {
		name: "a service that does not wait for the schemas",
		edit: func(t *testing.T, m model) {
			delete(m.service(t, "email")["depends_on"].(map[string]any), "schemas")
		},
		want: []string{"services: email must depend on schemas with condition service_completed_successfully"},
	}, {
		name: "no mail server",
		edit: func(t *testing.T, m model) { m.remove("mailpit") },
		want: []string{"mail: no mailpit service"},
	}, {
		name: "emails delivered to the container itself",
		edit: func(t *testing.T, m model) { m.setEnv(t, "localhost:1025", "SMTP_ADDR", "email") },
		want: []string{`services: email has SMTP_ADDR="localhost:1025", want mailpit:1025`},
	}, {
		name: "Mailpit pruning the inbox",
		edit: func(t *testing.T, m model) { delete(m.env(t, "mailpit"), "MP_MAX_MESSAGES") },
		want: []string{`mail: mailpit has MP_MAX_MESSAGES="", want 0`},
	}, {
		name: "Mailpit's inbox open to the network",
		edit: func(t *testing.T, m model) {
			delete(m.service(t, "mailpit")["ports"].([]any)[1].(map[string]any), "host_ip")
		},
		want: []string{"ports: mailpit publishes [127.0.0.1:1025:1025 :8025:8025], want [127.0.0.1:1025:1025 127.0.0.1:8025:8025]"},
	}, {
		name: "Mailpit on latest",
		edit: func(t *testing.T, m model) { m.service(t, "mailpit")["image"] = "axllent/mailpit:latest" },
		want: []string{`images: mailpit image "axllent/mailpit:latest" is pinned to latest`},
	}, {
		name: "Mailpit without a health check",
		edit: func(t *testing.T, m model) { delete(m.service(t, "mailpit"), "healthcheck") },
		want: []string{"health: mailpit has no health check"},
	}, {
		name: "a schemas job that restarts",
		edit: func(t *testing.T, m model) { m.service(t, "schemas")["restart"] = "unless-stopped" },
		want: []string{`schemas: schemas has restart "unless-stopped"; a one-shot job must not restart`},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := loadModel(t)
			tc.edit(t, m)
			reportsAll(t, Check(m.project(t)), tc.want...)
		})
	}
}

// The image's Go must be able to build the module: the builder image sets
// GOTOOLCHAIN=local, so it would refuse a go.mod that asks for a newer Go.
func TestDockerfileGoIsNewEnoughForGoMod(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	docker, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+(?:\.\d+)*)\s*$`).FindSubmatch(mod)
	have := regexp.MustCompile(`(?m)^FROM golang:(\d+(?:\.\d+)*)\S*`).FindSubmatch(docker)
	if want == nil || have == nil {
		t.Fatalf("cannot find the go directive in go.mod (%v) or a golang builder in infra/Dockerfile (%v)", want != nil, have != nil)
	}
	if compareVersions(string(have[1]), string(want[1])) < 0 {
		t.Errorf("infra/Dockerfile builds with Go %s, but go.mod asks for Go %s: bump the builder image", have[1], want[1])
	}
}

func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

// `PROCESSING_DELAY=200ms make up` slows the order service, as the
// walkthrough says; without it the order service does not wait.
func TestProcessingDelayComesFromTheShell(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{{nil, "0s"}, {[]string{"PROCESSING_DELAY=200ms"}, "200ms"}} {
		opts, err := cli.NewProjectOptions([]string{composeFile}, cli.WithWorkingDirectory(".."), cli.WithEnv(tc.env))
		if err != nil {
			t.Fatal(err)
		}
		p, err := opts.LoadProject(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if got := env(p.Services["order"], "PROCESSING_DELAY"); got != tc.want {
			t.Errorf("with %v, order has PROCESSING_DELAY=%q, want %q", tc.env, got, tc.want)
		}
	}
}
