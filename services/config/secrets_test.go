package config_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blackfriday-kafka/shop/services/config"
)

// TestSecretsNeverPrint: the SMTP password and the registry's passwords
// are credentials like the SASL one: in no %v, %+v, %#v, log line or JSON
// of a Config. The control: the user names do show, so the prints did
// print the credentials.
func TestSecretsNeverPrint(t *testing.T) {
	cfg, err := config.FromEnv(env(map[string]string{
		"SMTP_USERNAME": "shop-mailer", "SMTP_PASSWORD": "smtp-hunter2",
		"REGISTRY_USERS": "admin:reg-hunter2,order:reg-hunter3",
		"SECURE":         "1", "KAFKA_USERNAME": "svc-order", "KAFKA_PASSWORD": "sasl-hunter2",
	}), "email")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SMTPAuth.Password != "smtp-hunter2" || cfg.RegistryUsers["order"] != "reg-hunter3" {
		t.Fatalf("the credentials were not read: %v %v", cfg.SMTPAuth, cfg.RegistryUsers)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", cfg, "smtp", cfg.SMTPAuth, "users", cfg.RegistryUsers)
	asJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, shown := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), logged.String(), string(asJSON)} {
		if strings.Contains(shown, "hunter") {
			t.Fatalf("a password shows: %s", shown)
		}
		if !strings.Contains(shown, "shop-mailer") || !strings.Contains(shown, "order") {
			t.Fatalf("the control: the users do not show either: %s", shown)
		}
	}
}

// TestRegistryUsers: the registry's users come from a file or the
// environment, one of them; a bad entry is named without its password.
func TestRegistryUsers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(file, []byte("# the registry's users\nadmin:a:b:c\n\n order : o-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.FromEnv(env(map[string]string{"REGISTRY_USERS_FILE": file, "REGISTRY_WRITERS": "admin, ops"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.RegistryUsers) != 2 || cfg.RegistryUsers["admin"] != "a:b:c" || cfg.RegistryUsers["order"] != " o-pass" {
		t.Fatalf("users from the file: %#v", map[string]string(cfg.RegistryUsers))
	}
	if strings.Join(cfg.RegistryWriters, ",") != "admin,ops" {
		t.Fatalf("writers %q", cfg.RegistryWriters)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"REGISTRY_USERS": "admin:pw", "REGISTRY_USERS_FILE": file}, "give one of them"},
		{map[string]string{"REGISTRY_USERS": "admin:pw,orderpw-secret"}, "REGISTRY_USERS: entry 2: want user:password"},
		{map[string]string{"REGISTRY_USERS": "admin:pw,admin:pw2"}, "entry 2: user admin given twice"},
		{map[string]string{"REGISTRY_USERS": "admin:"}, "entry 1: want user:password"},
		{map[string]string{"REGISTRY_USERS_FILE": filepath.Join(t.TempDir(), "missing")}, "no such file"},
		{map[string]string{"SMTP_PASSWORD": "pw"}, "SMTP_USERNAME and SMTP_PASSWORD go together"},
	} {
		_, err := config.FromEnv(env(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%v: %v, want an error with %q and no password", tc.env, err, tc.want)
		}
	}
}
