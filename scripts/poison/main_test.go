package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/blackfriday-kafka/shop/scripts/target"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// TestPoison runs `make poison` against a shop booted in the test.
func TestPoison(t *testing.T) {
	env := shoptest.Start(t, shop.Options{}, nil)
	target := Target{Target: target.Target{Brokers: env.Stack.Brokers, RegistryURL: env.Stack.RegistryURL}, ServiceURLs: map[string]string{}}
	for _, name := range config.Services {
		target.ServiceURLs[name] = env.Shop.URL(name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var progress bytes.Buffer
	summary, err := Run(ctx, target, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if summary != "poison: 16/16 routed to DLQ, services healthy" {
		t.Fatalf("summary = %q\n%s", summary, progress.String())
	}
	if strings.Count(progress.String(), "  ok  ") != 18 {
		t.Fatalf("progress does not show 16 pills and the valid payment's order and email:\n%s", progress.String())
	}
}
