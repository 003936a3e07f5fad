package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/schemas"
)

// Local is a schema on this machine, to register under a topic's subject.
type Local struct {
	Topic string
	Text  string
	From  string // where it comes from: an .avsc file
}

// Build is every schema this build embeds, one per topic.
func Build() ([]Local, error) {
	var out []Local
	for _, s := range schemas.Topics() {
		out = append(out, Local{Topic: s.Name, Text: s.Text(), From: "build"})
	}
	return out, nil
}

// Verdict is what the registry says of a local schema.
type Verdict struct {
	Local
	Subject    string
	Registered bool     // the subject holds this very schema already
	New        bool     // the subject holds no schema yet
	Compatible bool     // it may be registered
	Latest     int      // the subject's latest version, if any
	Version    int      // the version it has, or got, under the subject
	ID         int      // its schema ID, once registered
	Messages   []string // why it is incompatible
}

func (v Verdict) String() string {
	switch {
	case v.Registered:
		return fmt.Sprintf("%s: already registered as version %d, ID %d", v.Subject, v.Version, v.ID)
	case v.New && v.ID != 0:
		return fmt.Sprintf("%s: new subject, registered as version %d, ID %d", v.Subject, v.Version, v.ID)
	case v.New:
		return fmt.Sprintf("%s: new subject, can be registered", v.Subject)
	case v.Compatible && v.ID != 0:
		return fmt.Sprintf("%s: compatible with version %d, registered as version %d, ID %d", v.Subject, v.Latest, v.Version, v.ID)
	case v.Compatible:
		return fmt.Sprintf("%s: compatible with version %d, can be registered", v.Subject, v.Latest)
	}
	return fmt.Sprintf("%s: INCOMPATIBLE with version %d (%s): %s", v.Subject, v.Latest, v.From, strings.Join(v.Messages, "; "))
}

// Check asks the registry whether l is registered already, and if not
// whether the subject's compatibility level lets it in, without changing
// anything.
func Check(ctx context.Context, reg *sr.Client, l Local) (Verdict, error) {
	v := Verdict{Local: l, Subject: schemas.Subject(l.Topic)}
	schema := sr.Schema{Schema: l.Text, Type: sr.TypeAvro}
	ss, err := reg.LookupSchema(ctx, v.Subject, schema)
	switch {
	case err == nil:
		v.Registered, v.Compatible, v.Version, v.ID = true, true, ss.Version, ss.ID
		return v, nil
	case !notFound(err):
		return v, fmt.Errorf("%s: %w", v.Subject, err)
	}
	latest, err := reg.SchemaByVersion(ctx, v.Subject, -1)
	switch {
	case notFound(err):
		v.New, v.Compatible = true, true
		return v, nil
	case err != nil:
		return v, fmt.Errorf("%s: %w", v.Subject, err)
	}
	v.Latest = latest.Version
	res, err := reg.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), v.Subject, -1, schema)
	if err != nil {
		return v, fmt.Errorf("%s: check compatibility: %w", v.Subject, err)
	}
	v.Compatible, v.Messages = res.Is, res.Messages
	if !v.Compatible && len(v.Messages) == 0 {
		v.Messages = []string{"the registry gave no detail"}
	}
	return v, nil
}

// Run checks every local schema and, unless checkOnly, registers them all,
// with BACKWARD compatibility on their subjects. If one is incompatible,
// nothing is registered: the registry would refuse it with 409 anyway, and
// half an upgrade is worse than none. It prints one line per schema and
// returns the verdicts.
func Run(ctx context.Context, reg *sr.Client, locals []Local, checkOnly bool, out io.Writer) ([]Verdict, error) {
	verdicts := make([]Verdict, 0, len(locals))
	bad := 0
	for _, l := range locals {
		v, err := Check(ctx, reg, l)
		if err != nil {
			return verdicts, err
		}
		if !v.Compatible {
			bad++
		}
		verdicts = append(verdicts, v)
	}
	if checkOnly || bad > 0 {
		for _, v := range verdicts {
			fmt.Fprintln(out, "  "+v.String())
		}
		if bad > 0 {
			return verdicts, fmt.Errorf("%d of %d schemas incompatible with the registry; nothing registered", bad, len(verdicts))
		}
		return verdicts, nil
	}
	for i := range verdicts {
		v := &verdicts[i]
		ss, err := schemas.RegisterText(ctx, reg, v.Subject, v.Text)
		if err != nil {
			return verdicts, err
		}
		v.Version, v.ID = ss.Version, ss.ID
		fmt.Fprintln(out, "  "+v.String())
	}
	return verdicts, nil
}

func notFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}
