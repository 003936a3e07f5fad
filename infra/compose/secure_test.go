package compose

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const secureFile = "../docker-compose.secure.yml"

func TestSecureStackKeepsItsInvariants(t *testing.T) {
	p := load(t, composeFile, secureFile)
	for _, problem := range CheckSecure(p) {
		t.Error(problem)
	}
	// The same services and ports as the open stack, and the acls job.
	open := load(t, composeFile)
	want := append(slices.Collect(maps.Keys(open.Services)), "acls")
	if got := slices.Sorted(maps.Keys(p.Services)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("the secure stack's services = %v, want %v", got, slices.Sorted(slices.Values(want)))
	}
	for name := range open.Services {
		if got, want := published(p.Services[name]), published(open.Services[name]); !slices.Equal(got, want) {
			t.Errorf("%s publishes %v in the secure stack, %v in the open one: the README's addresses are the same", name, got, want)
		}
	}
}

// The open stack is not the secure one: the check tells them apart.
func TestOpenStackFailsTheSecureCheck(t *testing.T) {
	reportsAll(t, CheckSecure(load(t, composeFile)),
		"acls: no acls service",
		"security: kafka1's listener PLAINTEXT is PLAINTEXT",
		"security: kafka2's listener PLAINTEXT_HOST is PLAINTEXT",
		"security: kafka3 formats its storage without a SCRAM-SHA-512 credential for admin",
		"brokers: kafka1 has KAFKA_AUTHORIZER_CLASS_NAME=\"\"",
		"services: payment has SECURE=\"\", want 1",
	)
}

// The control: the overlay itself, with kafka1's host listener left
// PLAINTEXT (a valid Kafka configuration, and a hole), fails the check.
func TestBrokenOverlayFails(t *testing.T) {
	data, err := os.ReadFile(secureFile)
	if err != nil {
		t.Fatal(err)
	}
	anchor := "  kafka1:\n    command: *kafka-secure-command\n    environment:\n      <<: *kafka-secure-env\n"
	if strings.Count(string(data), anchor) != 1 {
		t.Fatalf("the overlay no longer has kafka1's environment as this test expects:\n%s", anchor)
	}
	broken := strings.Replace(string(data), anchor, anchor+
		`      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_PLAINTEXT_HOST:PLAINTEXT"`+"\n", 1)
	path := filepath.Join(t.TempDir(), "docker-compose.secure.yml")
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	problems := CheckSecure(load(t, composeFile, path))
	reportsAll(t, problems,
		"security: kafka1's listener SASL_PLAINTEXT_HOST is PLAINTEXT: every listener a client uses must sign its clients in",
		"brokers: kafka1 has KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=",
	)
	for _, p := range problems {
		if !strings.Contains(p, "kafka1") {
			t.Errorf("a problem beyond kafka1's listener: %s", p)
		}
	}
}

func loadSecureModel(t *testing.T) model { return loadModel(t, composeFile, secureFile) }

// command is service's command, a bash script, edited by f.
func (m model) editCommand(t *testing.T, service string, f func(string) string) {
	t.Helper()
	cmd := m.service(t, service)["command"].([]any)
	script := cmd[len(cmd)-1].(string)
	if edited := f(script); edited != script {
		cmd[len(cmd)-1] = edited
		return
	}
	t.Fatalf("the edit changed nothing in %s's command", service)
}

// editConfig edits the content of config name.
func (m model) editConfig(t *testing.T, name string, f func(string) string) {
	t.Helper()
	cfg := m["configs"].(map[string]any)[name].(map[string]any)
	content := cfg["content"].(string)
	if edited := f(content); edited != content {
		cfg["content"] = edited
		return
	}
	t.Fatalf("the edit changed nothing in config %s", name)
}

func (m model) setHealth(t *testing.T, service string, test ...any) {
	t.Helper()
	m.service(t, service)["healthcheck"].(map[string]any)["test"] = test
}

func TestSecureCheckReportsEachViolation(t *testing.T) {
	const leaked = "Winter2024!"
	cases := []struct {
		name string
		edit func(t *testing.T, m model)
		want []string // each must be part of some reported problem
	}{{
		name: "a host listener left PLAINTEXT",
		edit: func(t *testing.T, m model) {
			m.setEnv(t, "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_PLAINTEXT_HOST:PLAINTEXT", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "kafka2")
		},
		want: []string{"security: kafka2's listener SASL_PLAINTEXT_HOST is PLAINTEXT"},
	}, {
		name: "an in-network listener left PLAINTEXT",
		edit: func(t *testing.T, m model) {
			m.setEnv(t, "PLAINTEXT://kafka3:29092,CONTROLLER://kafka3:29093,SASL_PLAINTEXT_HOST://0.0.0.0:9094", "KAFKA_LISTENERS", "kafka3")
			m.setEnv(t, "PLAINTEXT://kafka3:29092,SASL_PLAINTEXT_HOST://localhost:9094", "KAFKA_ADVERTISED_LISTENERS", "kafka3")
			m.setEnv(t, "PLAINTEXT", "KAFKA_INTER_BROKER_LISTENER_NAME", "kafka3")
		},
		want: []string{
			"security: kafka3's listener PLAINTEXT is PLAINTEXT",
			"security: kafka3 replicates over its listener PLAINTEXT, which is PLAINTEXT",
		},
	}, {
		name: "the controller listener published",
		edit: func(t *testing.T, m model) {
			ports := m.service(t, "kafka1")["ports"].([]any)
			m.service(t, "kafka1")["ports"] = append(ports, map[string]any{"target": 29093, "published": "29093", "host_ip": "127.0.0.1"})
		},
		want: []string{"security: kafka1 publishes its controller listener CONTROLLER://kafka1:29093, where anyone is ANONYMOUS"},
	}, {
		name: "no authorizer",
		edit: func(t *testing.T, m model) { delete(m.env(t, "kafka3"), "KAFKA_AUTHORIZER_CLASS_NAME") },
		want: []string{`brokers: kafka3 has KAFKA_AUTHORIZER_CLASS_NAME="", want org.apache.kafka.metadata.authorizer.StandardAuthorizer`},
	}, {
		name: "everyone allowed where no ACL says",
		edit: func(t *testing.T, m model) { m.setEnv(t, "true", "KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND", "kafka1") },
		want: []string{`brokers: kafka1 has KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND="true", want false`},
	}, {
		name: "admin not a super user",
		edit: func(t *testing.T, m model) { m.setEnv(t, "User:ANONYMOUS", "KAFKA_SUPER_USERS", "kafka2") },
		want: []string{`brokers: kafka2 has KAFKA_SUPER_USERS="User:ANONYMOUS", want User:admin;User:ANONYMOUS`},
	}, {
		name: "a principal without a SCRAM credential",
		edit: func(t *testing.T, m model) {
			m.editCommand(t, "kafka2", func(s string) string {
				return strings.Replace(s, "--add-scram 'SCRAM-SHA-512=[name=email,password=email-secret]'", "", 1)
			})
		},
		want: []string{"security: kafka2 formats its storage without a SCRAM-SHA-512 credential for email"},
	}, {
		name: "a SCRAM credential of the wrong mechanism",
		edit: func(t *testing.T, m model) {
			m.editCommand(t, "kafka1", func(s string) string {
				return strings.Replace(s, "SCRAM-SHA-512=[name=order,", "SCRAM-SHA-256=[name=order,", 1)
			})
		},
		want: []string{"security: kafka1 formats its storage without a SCRAM-SHA-512 credential for order"},
	}, {
		name: "a SCRAM credential with another password",
		edit: func(t *testing.T, m model) {
			m.editCommand(t, "kafka1", func(s string) string {
				return strings.Replace(s, "password=order-secret", "password="+leaked, 1)
			})
		},
		want: []string{
			"security: kafka1 formats order's credential with a password other than the one order signs in with",
			"passwords: kafka1 has a password for order in its command that is not order's dev one",
		},
	}, {
		name: "credentials on a formatted volume, never written",
		edit: func(t *testing.T, m model) {
			m.service(t, "kafka3")["command"] = []any{"/etc/confluent/docker/run"}
		},
		want: []string{
			`security: kafka3's command does not say "kafka-storage format"`,
			"security: kafka3 formats its storage without a SCRAM-SHA-512 credential for admin",
		},
	}, {
		name: "a node that never starts the broker",
		edit: func(t *testing.T, m model) {
			m.editCommand(t, "kafka2", func(s string) string {
				return strings.Replace(s, "exec /etc/confluent/docker/run", "sleep infinity", 1)
			})
		},
		want: []string{`security: kafka2's command does not say "exec /etc/confluent/docker/run"`},
	}, {
		name: "brokers that sign in to each other as a service",
		edit: func(t *testing.T, m model) {
			m.editConfig(t, "kafka-jaas", func(s string) string {
				return strings.NewReplacer(`username="admin"`, `username="payment"`, `password="admin-secret"`, `password="payment-secret"`).Replace(s)
			})
		},
		want: []string{`security: kafka1's brokers sign in to each other as "payment", want admin`},
	}, {
		name: "no JAAS file for the brokers",
		edit: func(t *testing.T, m model) { delete(m.service(t, "kafka2"), "configs") },
		want: []string{
			"security: kafka2's JAAS file /etc/kafka/sasl/jaas.conf: no config is mounted at /etc/kafka/sasl/jaas.conf",
			"health: kafka2's health check signs in with /etc/kafka/sasl/admin.properties: no config is mounted",
		},
	}, {
		name: "a broker health check that does not sign in",
		edit: func(t *testing.T, m model) {
			m.setHealth(t, "kafka1", "CMD-SHELL", "kafka-broker-api-versions --bootstrap-server kafka1:29092 | grep -qF 'kafka1:29092 (id: 1 '")
		},
		want: []string{"health: kafka1's health check does not sign in (--command-config)"},
	}, {
		name: "a broker health check that signs in without SASL",
		edit: func(t *testing.T, m model) {
			m.editConfig(t, "kafka-admin-client", func(s string) string {
				return strings.Replace(s, "security.protocol=SASL_PLAINTEXT", "security.protocol=PLAINTEXT", 1)
			})
		},
		want: []string{"health: kafka3's health check signs in with /etc/kafka/sasl/admin.properties, which must say security.protocol=SASL_PLAINTEXT"},
	}, {
		name: "a registry store in plaintext",
		edit: func(t *testing.T, m model) {
			m.setEnv(t, "PLAINTEXT", "SCHEMA_REGISTRY_KAFKASTORE_SECURITY_PROTOCOL", "schema-registry")
			m.setEnv(t, "PLAINTEXT://kafka1:29092,PLAINTEXT://kafka2:29092,PLAINTEXT://kafka3:29092", "SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", "schema-registry")
		},
		want: []string{
			`registry: schema-registry has SCHEMA_REGISTRY_KAFKASTORE_SECURITY_PROTOCOL="PLAINTEXT", want SASL_PLAINTEXT`,
			`registry: schema-registry has SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS="PLAINTEXT://kafka1:29092`,
		},
	}, {
		name: "a registry store as a service",
		edit: func(t *testing.T, m model) {
			m.setEnv(t, `org.apache.kafka.common.security.scram.ScramLoginModule required username="order" password="order-secret";`, "SCHEMA_REGISTRY_KAFKASTORE_SASL_JAAS_CONFIG", "schema-registry")
		},
		want: []string{`registry: schema-registry has SCHEMA_REGISTRY_KAFKASTORE_SASL_JAAS_CONFIG="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"order\"`},
	}, {
		name: "a registry API open to anyone",
		edit: func(t *testing.T, m model) {
			delete(m.env(t, "schema-registry"), "SCHEMA_REGISTRY_AUTHENTICATION_METHOD")
		},
		want: []string{`registry: schema-registry has SCHEMA_REGISTRY_AUTHENTICATION_METHOD="", want BASIC`},
	}, {
		name: "the registry's login module of the wrong Jetty",
		edit: func(t *testing.T, m model) {
			m.editConfig(t, "registry-jaas", func(s string) string {
				return strings.Replace(s, "org.eclipse.jetty.security.jaas.spi.", "org.eclipse.jetty.jaas.spi.", 1)
			})
		},
		want: []string{"security: schema-registry's login is not org.eclipse.jetty.security.jaas.spi.PropertyFileLoginModule"},
	}, {
		name: "the registry's JAAS section not its realm",
		edit: func(t *testing.T, m model) {
			m.setEnv(t, "Registry", "SCHEMA_REGISTRY_AUTHENTICATION_REALM", "schema-registry")
		},
		want: []string{`security: schema-registry's JAAS file has no section "Registry"`},
	}, {
		name: "a principal missing from the registry's users",
		edit: func(t *testing.T, m model) {
			m.editConfig(t, "registry-users", func(s string) string { return strings.Replace(s, "analytics: analytics-secret,user\n", "", 1) })
		},
		want: []string{"security: schema-registry's users lack analytics"},
	}, {
		name: "a registry user without a role",
		edit: func(t *testing.T, m model) {
			m.editConfig(t, "registry-users", func(s string) string {
				return strings.Replace(s, "order: order-secret,user", "order: order-secret,guest", 1)
			})
		},
		want: []string{"security: schema-registry's users give order no role of [admin user]"},
	}, {
		name: "a registry user with a real password",
		edit: func(t *testing.T, m model) {
			m.editConfig(t, "registry-users", func(s string) string { return strings.Replace(s, "email: email-secret", "email: "+leaked, 1) })
		},
		want: []string{"passwords: schema-registry's users give email a password other than the one email signs in with"},
	}, {
		name: "a registry user who is no principal",
		edit: func(t *testing.T, m model) {
			m.editConfig(t, "registry-users", func(s string) string { return s + "guest: guest-secret,user\n" })
		},
		want: []string{`security: schema-registry's users list "guest", who is no principal of infra/access`},
	}, {
		name: "a registry health check without credentials",
		edit: func(t *testing.T, m model) {
			m.setHealth(t, "schema-registry", "CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8081 && printf 'GET /subjects HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '")
		},
		want: []string{"health: schema-registry's health check sends no principal's basic auth"},
	}, {
		name: "a registry health check with a real password",
		edit: func(t *testing.T, m model) {
			m.setHealth(t, "schema-registry", "CMD", "bash", "-c", "printf 'Authorization: Basic YWRtaW46V2ludGVyMjAyNCE=\\r\\n'") // admin:Winter2024!
		},
		want: []string{"passwords: schema-registry has a password for admin in its health check (basic auth) that is not admin's dev one"},
	}, {
		name: "a UI in plaintext",
		edit: func(t *testing.T, m model) {
			delete(m.env(t, "kafka-ui"), "KAFKA_CLUSTERS_0_PROPERTIES_SECURITY_PROTOCOL")
		},
		want: []string{`ui: kafka-ui has KAFKA_CLUSTERS_0_PROPERTIES_SECURITY_PROTOCOL="", want SASL_PLAINTEXT`},
	}, {
		name: "a UI without the registry's password",
		edit: func(t *testing.T, m model) {
			delete(m.env(t, "kafka-ui"), "KAFKA_CLUSTERS_0_SCHEMAREGISTRYAUTH_PASSWORD")
		},
		want: []string{`ui: kafka-ui has KAFKA_CLUSTERS_0_SCHEMAREGISTRYAUTH_PASSWORD="", want admin-secret`},
	}, {
		name: "a UI with a real password",
		edit: func(t *testing.T, m model) {
			m.setEnv(t, leaked, "KAFKA_CLUSTERS_0_SCHEMAREGISTRYAUTH_PASSWORD", "kafka-ui")
		},
		want: []string{"passwords: kafka-ui has a password for admin in its environment KAFKA_CLUSTERS_0_SCHEMAREGISTRYAUTH_PASSWORD that is not admin's dev one"},
	}, {
		name: "a service with a password of its own in the file",
		edit: func(t *testing.T, m model) { m.setEnv(t, leaked, "KAFKA_PASSWORD", "email") },
		want: []string{"passwords: email has a password in its environment KAFKA_PASSWORD that is no principal's dev one"},
	}, {
		name: "a JAAS login with a real password",
		edit: func(t *testing.T, m model) {
			m.setEnv(t, `org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="`+leaked+`";`, "KAFKA_CLUSTERS_0_PROPERTIES_SASL_JAAS_CONFIG", "kafka-ui")
		},
		want: []string{"passwords: kafka-ui has a password for admin in its environment KAFKA_CLUSTERS_0_PROPERTIES_SASL_JAAS_CONFIG that is not admin's dev one"},
	}, {
		name: "a service not in secure mode",
		edit: func(t *testing.T, m model) { delete(m.env(t, "order"), "SECURE") },
		want: []string{`services: order has SECURE="", want 1`},
	}, {
		name: "a job not in secure mode",
		edit: func(t *testing.T, m model) { delete(m.env(t, "topics"), "SECURE") },
		want: []string{`topics: topics has SECURE="", want 1`},
	}, {
		name: "a service signed in as admin",
		edit: func(t *testing.T, m model) {
			m.setEnv(t, "admin", "KAFKA_USERNAME", "payment")
			m.setEnv(t, "admin-secret", "KAFKA_PASSWORD", "payment")
		},
		want: []string{"security: payment signs in as admin (KAFKA_USERNAME), want payment"},
	}, {
		name: "a service that does not wait for the ACLs",
		edit: func(t *testing.T, m model) { delete(m.service(t, "analytics")["depends_on"].(map[string]any), "acls") },
		want: []string{"services: analytics must depend on acls with condition service_completed_successfully"},
	}, {
		name: "no acls job",
		edit: func(t *testing.T, m model) { m.remove("acls") },
		want: []string{
			"acls: no acls service",
			"services: email must depend on acls with condition service_completed_successfully",
		},
	}, {
		name: "an acls job that runs something else",
		edit: func(t *testing.T, m model) { m.service(t, "acls")["command"] = []any{"topics"} },
		want: []string{"acls: acls runs `shop topics`, want `shop acls`"},
	}, {
		name: "an acls job before the brokers are healthy",
		edit: func(t *testing.T, m model) { delete(m.service(t, "acls")["depends_on"].(map[string]any), "kafka2") },
		want: []string{"health: acls must depend on kafka2 with condition service_healthy"},
	}, {
		name: "an acls job that restarts",
		edit: func(t *testing.T, m model) { m.service(t, "acls")["restart"] = "on-failure" },
		want: []string{`acls: acls has restart "on-failure"; a one-shot job must not restart`},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := loadSecureModel(t)
			tc.edit(t, m)
			problems := CheckSecure(m.project(t))
			reportsAll(t, problems, tc.want...)
			for _, p := range problems {
				if strings.Contains(p, leaked) {
					t.Errorf("a report says the password: %s", p)
				}
			}
		})
	}
}

// The open stack's check finds passwords too: none belongs in either file.
func TestOpenStackHoldsNoPassword(t *testing.T) {
	m := loadModel(t)
	m.setEnv(t, "hunter2", "SMTP_PASSWORD", "email")
	problems := Check(m.project(t))
	if !slices.ContainsFunc(problems, func(p string) bool {
		return strings.HasPrefix(p, "passwords: email has a password in its environment SMTP_PASSWORD")
	}) {
		t.Errorf("no problem reports email's SMTP_PASSWORD; got:\n  %s", strings.Join(problems, "\n  "))
	}
}

// `SECURE=1 make up` (down, logs, ps) runs the overlay: the Makefile's
// COMPOSE adds it when SECURE is 1, and `make up` prints the acls job's line.
func TestMakefileAddsTheOverlayWhenSecure(t *testing.T) {
	data, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^COMPOSE\s*:?=.*$`).FindString(string(data))
	if !strings.Contains(line, "-f infra/docker-compose.yml") || !strings.Contains(line, "$(filter 1,$(SECURE)), -f infra/docker-compose.secure.yml") {
		t.Errorf("the Makefile's COMPOSE is %q, want infra/docker-compose.yml, and infra/docker-compose.secure.yml over it when SECURE=1", line)
	}
	if !strings.Contains(string(data), "grep '^acls:'") {
		t.Error("make up does not print the acls job's acls: line")
	}
	if _, err := os.Stat(filepath.Join("..", filepath.Base(secureFile))); err != nil {
		t.Error(err)
	}
}
