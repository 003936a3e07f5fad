package schemas

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/sr"
)

// Register puts this build's schema of topic s under its subject and returns
// what the registry made of it. Running it twice is harmless: a schema
// already there keeps its ID. It is the one step that writes to the
// registry (make schemas); services only look their schemas up.
func Register(ctx context.Context, registry *sr.Client, s *Spec) (sr.SubjectSchema, error) {
	return RegisterText(ctx, registry, s.Subject, s.text)
}

// RegisterAll registers the schema of every topic of the table under its
// subject: the one step of make schemas.
func RegisterAll(ctx context.Context, registry *sr.Client) error {
	for _, s := range Topics() {
		if _, err := Register(ctx, registry, s); err != nil {
			return err
		}
	}
	return nil
}

// RegisterText is Register with an Avro schema of the caller's, such as a
// new version read from a file. The registry refuses it (HTTP 409) if it
// breaks the subject's compatibility level with earlier versions.
func RegisterText(ctx context.Context, registry *sr.Client, subject, text string) (sr.SubjectSchema, error) {
	if err := EnsureBackward(ctx, registry, subject); err != nil {
		return sr.SubjectSchema{}, err
	}
	ss, err := registry.CreateSchema(ctx, subject, sr.Schema{Schema: text, Type: sr.TypeAvro})
	if err != nil {
		return sr.SubjectSchema{}, fmt.Errorf("register %s: %w", subject, err)
	}
	return ss, nil
}

// EnsureBackward makes subject check new versions at least as BACKWARD
// does: a subject whose level (its own, or the registry's global one) is
// NONE is set to BACKWARD. Any other level is someone's decision and stays:
// a FULL subject stays FULL.
func EnsureBackward(ctx context.Context, registry *sr.Client, subject string) error {
	res := registry.Compatibility(sr.WithParams(ctx, sr.DefaultToGlobal), subject)
	if len(res) == 1 && res[0].Err == nil && res[0].Level != sr.CompatNone {
		return nil
	}
	for _, r := range registry.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatBackward}, subject) {
		if r.Err != nil {
			return fmt.Errorf("set compatibility of %s: %w", subject, r.Err)
		}
	}
	return nil
}
