//go:build kafka

package kafkatest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// TestKafkaToolsOnTheEmbeddedCluster runs the tutorial's commands from
// Kafka's own distribution (parts 1 and 4) against the embedded stack of
// make run, with the shop running on it: the embedded cluster must answer
// Kafka's Java admin client as a real cluster does.
func TestKafkaToolsOnTheEmbeddedCluster(t *testing.T) {
	lib := filepath.Join(root, "infra", "kafka", ".cache", "lib")
	if jars, _ := filepath.Glob(filepath.Join(lib, "kafka-tools-*.jar")); len(jars) == 0 {
		t.Fatalf("no kafka-tools jar in %s: make kafka-up resolves Kafka's jars, the CLI among them", lib)
	}
	ctx := context.Background()
	stack, err := infra.StartEmbedded(ctx, infra.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close) // after the services, which stop first
	cat, err := schemas.Connect(ctx, stack.RegistryURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Config{Brokers: stack.Brokers, RegistryURL: stack.RegistryURL, Addr: "127.0.0.1:0", InstanceID: "cli", Logger: shoptest.Logger(t)}
	s := shoptest.Services(t, cfg, cat, shop.Options{Services: []string{"payment", "order", "email"}})
	for i := range 6 {
		p := schemas.PaymentSucceeded{UserID: int64(i + 1), Cart: []schemas.CartItem{{Name: "Lamp", UnitPriceCents: 1250, Quantity: 1}}}
		if _, _, _, err := postPayment(ctx, s.URL("payment"), p); err != nil {
			t.Fatal(err)
		}
	}
	// Every payment an email: the groups have committed, in transactions.
	eventually(t, 30*time.Second, func() error {
		recs, err := infra.ReadTopic(ctx, stack.Brokers, schemas.Emails.Name, kgo.ReadCommitted(), 200*time.Millisecond)
		if err != nil || len(recs) != 6 {
			return fmt.Errorf("%d emails (%v), want 6", len(recs), err)
		}
		return nil
	})

	bootstrap := stack.Brokers[0]
	for _, tc := range []struct {
		name string
		main string
		args []string
		want []string // regular expressions the output must match
	}{
		{"kafka-topics --describe", "org.apache.kafka.tools.TopicCommand",
			[]string{"--describe", "--topic", schemas.Payments.Name},
			[]string{`Topic: payment-successful\s+TopicId: \S+\s+PartitionCount: 3\s+ReplicationFactor: 3`, `min.insync.replicas=2`,
				`Partition: 2\s+Leader: \d+\s+Replicas: \d,\d,\d\s+Isr: \d,\d,\d`}},
		{"kafka-topics --list", "org.apache.kafka.tools.TopicCommand",
			[]string{"--list"},
			[]string{`(?m)^dlq-order$`, `(?m)^email-sent$`, `(?m)^order-created$`, `(?m)^payment-successful$`}},
		{"kafka-consumer-groups --describe", "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
			[]string{"--describe", "--group", "order-service-group"},
			[]string{`order-service-group\s+payment-successful\s+0\s+\d+\s+\d+\s+0\s+\S+`, `order-service-group\s+payment-successful\s+2\s`}},
		{"kafka-consumer-groups --list", "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
			[]string{"--list"},
			[]string{`(?m)^order-service-group$`, `(?m)^email-service-group$`}},
		{"kafka-console-consumer read_committed", "org.apache.kafka.tools.consumer.ConsoleConsumer",
			[]string{"--topic", schemas.Orders.Name, "--from-beginning", "--isolation-level", "read_committed", "--max-messages", "6",
				"--property", "print.key=true", "--timeout-ms", "30000"},
			[]string{`Processed a total of 6 messages`}},
		{"kafka-transactions list", "org.apache.kafka.tools.TransactionsCommand",
			[]string{"list"},
			[]string{`order-service-cli`, `email-service-cli`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := kafkaTool(ctx, lib, tc.main, append([]string{"--bootstrap-server", bootstrap}, tc.args...)...)
			if err != nil {
				t.Fatalf("%s: %v\n%s", tc.name, err, out)
			}
			for _, w := range tc.want {
				if !regexp.MustCompile(w).MatchString(out) {
					t.Errorf("%s: output lacks %q:\n%s", tc.name, w, out)
				}
			}
			if strings.Contains(out, "Exception") {
				t.Errorf("%s: the tool hit an exception:\n%s", tc.name, out)
			}
		})
	}
}

// kafkaTool runs one of Kafka's command-line tools by its main class, as
// its shell script would, and returns what it printed.
func kafkaTool(ctx context.Context, lib, main string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	logConfig := filepath.Join(os.TempDir(), "kafkatest-tools-log4j2.properties")
	if err := os.WriteFile(logConfig, []byte("rootLogger.level = WARN\nappender.err.type = Console\nappender.err.name = ERR\n"+
		"appender.err.target = SYSTEM_ERR\nappender.err.layout.type = PatternLayout\nappender.err.layout.pattern = %p %m%n\n"+
		"rootLogger.appenderRef.err.ref = ERR\n"), 0o644); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "java", append([]string{"-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dlog4j2.configurationFile=" + logConfig, "-cp", filepath.Join(lib, "*"), main}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
