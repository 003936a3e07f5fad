package platform

import (
	"strings"
	"testing"
	"time"
)

func TestFromEnvTransactionBounds(t *testing.T) {
	t.Setenv("TXN_MAX_RECORDS", "")
	t.Setenv("TXN_MAX_INTERVAL", "")
	cfg, err := FromEnv("order")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tuning.MaxRecords != 0 || cfg.Tuning.MaxInterval != 0 {
		t.Fatalf("unset: got %d records, %v; want zero (the engine's defaults)", cfg.Tuning.MaxRecords, cfg.Tuning.MaxInterval)
	}

	t.Setenv("TXN_MAX_RECORDS", "250")
	t.Setenv("TXN_MAX_INTERVAL", "20ms")
	if cfg, err = FromEnv("order"); err != nil {
		t.Fatal(err)
	}
	if cfg.Tuning.MaxRecords != 250 || cfg.Tuning.MaxInterval != 20*time.Millisecond {
		t.Fatalf("got %d records, %v; want 250, 20ms", cfg.Tuning.MaxRecords, cfg.Tuning.MaxInterval)
	}

	for name, bad := range map[string]string{"TXN_MAX_RECORDS": "0", "TXN_MAX_INTERVAL": "100"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, bad)
			_, err := FromEnv("order")
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("%s=%s: got %v, want an error naming the variable", name, bad, err)
			}
		})
	}
}
