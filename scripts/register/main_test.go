package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/schemas/schemastest"
)

func TestRegister(t *testing.T) {
	reg := schemastest.Registry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	build, err := Build()
	if err != nil {
		t.Fatal(err)
	}

	n := len(schemas.Topics()) // a subject each
	var out bytes.Buffer
	vs, err := Run(ctx, reg, build, true, &out)
	if err != nil || len(vs) != n || strings.Count(out.String(), "new subject, can be registered") != n {
		t.Fatalf("check on an empty registry: %v\n%s", err, out.String())
	}
	if subjects, _ := reg.Subjects(ctx); len(subjects) != 0 {
		t.Fatalf("--check registered %v", subjects)
	}

	out.Reset()
	if _, err := Run(ctx, reg, build, false, &out); err != nil || strings.Count(out.String(), "new subject, registered as version 1") != n {
		t.Fatalf("first registration: %v\n%s", err, out.String())
	}
	out.Reset()
	if _, err := Run(ctx, reg, build, false, &out); err != nil || strings.Count(out.String(), "already registered as version 1") != n {
		t.Fatalf("second registration is not a no-op: %v\n%s", err, out.String())
	}
	for _, r := range reg.Compatibility(sr.WithParams(ctx, sr.DefaultToGlobal), schemas.Payments.Subject) {
		if r.Err != nil || r.Level.String() != "BACKWARD" {
			t.Fatalf("compatibility %v %v", r.Level, r.Err)
		}
	}

	file := func(name string) []Local {
		b, err := os.ReadFile("../../schemas/evolution/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return []Local{{Topic: schemas.Payments.Name, Text: string(b), From: name}}
	}
	out.Reset()
	if _, err := Run(ctx, reg, file("payment_succeeded_v2_incompatible.avsc"), false, &out); err == nil ||
		!strings.Contains(out.String(), "payment-successful-value: INCOMPATIBLE with version 1") {
		t.Fatalf("incompatible v2: %v\n%s", err, out.String())
	}
	out.Reset()
	if _, err := Run(ctx, reg, file("payment_succeeded_v2.avsc"), true, &out); err != nil ||
		!strings.Contains(out.String(), "compatible with version 1, can be registered") {
		t.Fatalf("check v2: %v\n%s", err, out.String())
	}
	out.Reset()
	if _, err := Run(ctx, reg, file("payment_succeeded_v2.avsc"), false, &out); err != nil ||
		!strings.Contains(out.String(), "compatible with version 1, registered as version 2") {
		t.Fatalf("register v2: %v\n%s", err, out.String())
	}
	// The build's v1 is still there, as version 1: a rerun of make
	// schemas after the challenge changes nothing.
	out.Reset()
	if _, err := Run(ctx, reg, build, true, &out); err != nil || !strings.Contains(out.String(), "payment-successful-value: already registered as version 1") {
		t.Fatalf("build after v2: %v\n%s", err, out.String())
	}
}
