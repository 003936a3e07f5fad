package config_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/blackfriday-kafka/shop/services/config"
)

func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func TestDefaults(t *testing.T) {
	cfg, err := config.FromEnv(env(nil), config.Services...)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Brokers, ",") != config.DefaultBrokers || cfg.RegistryURL != config.DefaultRegistryURL ||
		cfg.InstanceID != "1" || cfg.ListenAddr("email") != ":8002" || cfg.MaxRecords != 0 || cfg.MaxInterval != 0 {
		t.Fatalf("defaults = %+v", cfg)
	}
}

// Each instance has a state directory of its own: STATE_DIR itself for a
// process that runs one service, one directory per service under it for
// make run and make services.
func TestStateDirs(t *testing.T) {
	for _, tc := range []struct {
		vars     map[string]string
		services []string
		want     map[string]string
	}{
		{nil, config.Services, map[string]string{"payment": ".run/state/payment-1", "order": ".run/state/order-1"}},
		{map[string]string{"INSTANCE_ID": "2"}, []string{"payment"}, map[string]string{"payment": ".run/state/payment-2"}},
		{map[string]string{"STATE_DIR": "/var/lib/shop/pay"}, []string{"payment"}, map[string]string{"payment": "/var/lib/shop/pay"}},
		{map[string]string{"STATE_DIR": "/var/lib/shop"}, config.Services,
			map[string]string{"payment": "/var/lib/shop/payment-1", "order": "/var/lib/shop/order-1"}},
	} {
		cfg, err := config.FromEnv(env(tc.vars), tc.services...)
		if err != nil {
			t.Fatal(err)
		}
		for service, want := range tc.want {
			if got := cfg.StateDirOf(service); got != want {
				t.Errorf("%v for %v: %s keeps its state in %s, want %s", tc.vars, tc.services, service, got, want)
			}
		}
	}
	cfg, _ := config.FromEnv(env(map[string]string{"STATE_CACHE_MB": "64"}), "payment")
	if cfg.StateCache() != 64<<20 {
		t.Fatalf("STATE_CACHE_MB=64: cache of %d bytes", cfg.StateCache())
	}
	if cfg, _ := config.FromEnv(env(nil), "payment"); cfg.StateCache() != 32<<20 {
		t.Fatalf("default cache of %d bytes, want 32 MiB", cfg.StateCache())
	}
}

func TestTransactionBounds(t *testing.T) {
	cfg, err := config.FromEnv(env(map[string]string{"TXN_MAX_RECORDS": "250", "TXN_MAX_INTERVAL": "20ms"}), "order")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxRecords != 250 || cfg.MaxInterval != 20*time.Millisecond {
		t.Fatalf("got %d records, %v; want 250, 20ms", cfg.MaxRecords, cfg.MaxInterval)
	}
}

// A variable is checked by the commands that use it, and its error names it.
func TestBadValuesFailOnlyTheCommandsThatUseThem(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		fails       []string // services whose command must fail
		passes      []string
	}{
		{"PROCESSING_DELAY", "fast", []string{"order"}, []string{"email", "payment"}},
		{"TXN_MAX_RECORDS", "0", []string{"order", "email"}, []string{"payment", "analytics"}},
		{"TXN_MAX_INTERVAL", "100", []string{"email"}, []string{"analytics"}},
		{"DELIVERY", "sometimes", []string{"order"}, []string{"payment"}},
		{"PORT", "http", []string{"payment"}, nil},
		{"LOG_LEVEL", "loud", []string{"payment"}, nil},
		{"ANALYTICS_URL", "analytics-2:8003", []string{"analytics"}, []string{"payment", "order"}},
		{"STATE_CACHE_MB", "lots", []string{"payment", "order"}, []string{"email", "analytics"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := env(map[string]string{tc.name: tc.value})
			for _, s := range tc.fails {
				if _, err := config.FromEnv(vars, s); err == nil || !strings.Contains(err.Error(), tc.name) {
					t.Errorf("shop %s with %s=%s: err = %v, want one naming the variable", s, tc.name, tc.value, err)
				}
			}
			for _, s := range append(tc.passes, "") {
				if _, err := config.FromEnv(vars, s); err != nil && tc.passes != nil {
					t.Errorf("shop %s does not use %s, yet failed: %v", s, tc.name, err)
				}
			}
		})
	}
	// shop topics runs no service: only the cluster's address matters.
	if _, err := config.FromEnv(env(map[string]string{"PROCESSING_DELAY": "fast"})); err != nil {
		t.Fatalf("shop topics with a bad PROCESSING_DELAY: %v", err)
	}
}

// Secure mode: each service its own principal with the dev password unless
// the environment names one; the password never printed.
func TestCredentials(t *testing.T) {
	cfg, err := config.FromEnv(env(map[string]string{"SECURE": "1"}), "order")
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := cfg.As("order").Credentials(); !ok || c != (config.Credentials{Mechanism: "SCRAM-SHA-512", Username: "order", Password: "order-secret"}) {
		t.Fatalf("order in secure mode: %v %v", c, ok)
	}
	if c, _ := cfg.Credentials(); c.Username != "admin" {
		t.Fatalf("the tools sign in as %q, want admin", c.Username)
	}
	if _, ok := (config.Config{}).Credentials(); ok {
		t.Fatal("the open stack has credentials")
	}

	cfg, err = config.FromEnv(env(map[string]string{"SECURE": "1", "KAFKA_USERNAME": "svc-order", "KAFKA_PASSWORD": "s3cr3t-from-vault"}), "order")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := cfg.As("order").Credentials()
	if c.Username != "svc-order" || c.Password != "s3cr3t-from-vault" {
		t.Fatalf("given credentials: %v", c)
	}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "sasl", cfg.SASL, "credentials", c)
	for _, shown := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), logged.String()} {
		if strings.Contains(shown, "s3cr3t") {
			t.Fatalf("the password shows: %s", shown)
		}
	}
	if !strings.Contains(logged.String(), "svc-order") { // the control: the credentials were printed
		t.Fatalf("log without the user: %s", logged.String())
	}

	for _, bad := range []map[string]string{
		{"KAFKA_SASL_MECHANISM": "GSSAPI"},
		{"KAFKA_USERNAME": "order"},
	} {
		if _, err := config.FromEnv(env(bad), "order"); err == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
}
