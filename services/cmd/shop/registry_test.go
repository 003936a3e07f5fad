package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/blackfriday-kafka/shop/infra/access"
	"github.com/blackfriday-kafka/shop/services/config"
)

// TestRegistryUsersFromConfiguration: `shop registry` in secure mode
// takes its users from the configuration, and only from there: the dev
// stacks' admin/admin-secret is refused by a registry configured with
// other passwords, and without users secure mode does not start.
func TestRegistryUsersFromConfiguration(t *testing.T) {
	cluster, err := kfake.NewCluster(append(access.Embedded(access.DevPassword), kfake.NumBrokers(1))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	vars := map[string]string{
		"SECURE":        "1",
		"KAFKA_BROKERS": strings.Join(cluster.ListenAddrs(), ","),
		"REGISTRY_ADDR": "127.0.0.1:0",
		"LOG_LEVEL":     "warn",
	}
	getenv := func(name string) string { return vars[name] }

	cfg, err := config.FromEnv(getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := startRegistry(ctx, cfg); err == nil || !strings.Contains(err.Error(), "REGISTRY_USERS_FILE") {
		t.Fatalf("secure mode without users: %v; want a refusal naming REGISTRY_USERS_FILE", err)
	}

	vars["REGISTRY_USERS"] = "admin:vault-admin-pw,order:vault-order-pw"
	if cfg, err = config.FromEnv(getenv); err != nil {
		t.Fatal(err)
	}
	srv, err := startRegistry(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	register := `{"schema":"\"string\""}`
	for _, tc := range []struct {
		user, pass string
		status     int
	}{
		{"admin", "admin-secret", 401}, // the dev stacks' password
		{"order", "order-secret", 401},
		{"admin", "vault-admin-pw", 200}, // the control: the configured one
		{"order", "vault-order-pw", 403}, // a reader may not write
	} {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/subjects/s-value/versions", strings.NewReader(register))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(tc.user, tc.pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s/%s: %d, want %d", tc.user, tc.pass, resp.StatusCode, tc.status)
		}
	}
}
