package schemas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
)

// Catalog is the table bound to one schema registry: a codec per topic, and
// the writer schemas met so far, shared by all of them. Building it asks the
// registry nothing; Resolve learns the IDs this build writes with.
type Catalog struct {
	registry *sr.Client
	codecs   map[string]any // *Codec[V] by topic name
	writers  writers

	mu      sync.Mutex
	missing error // what the last Resolve lacked
}

// NewCatalog binds the topic table to registry.
func NewCatalog(registry *sr.Client) *Catalog {
	c := &Catalog{registry: registry, codecs: make(map[string]any, len(table))}
	c.writers.init(registry)
	for _, s := range table {
		c.codecs[s.Name] = s.newCodec(c)
	}
	return c
}

// Resolved binds the table to registry and resolves every topic: for tools
// and tests that run after the schemas were registered.
func Resolved(ctx context.Context, registry *sr.Client) (*Catalog, error) {
	c := NewCatalog(registry)
	return c, c.Resolve(ctx, Topics()...)
}

// Connect is Resolved with the registry at url.
func Connect(ctx context.Context, url string, opts ...sr.ClientOpt) (*Catalog, error) {
	reg, err := NewRegistryClient(url, opts...)
	if err != nil {
		return nil, err
	}
	return Resolved(ctx, reg)
}

// Codec is the topic's codec in catalog c.
func (t Topic[V]) Codec(c *Catalog) *Codec[V] { return c.codecs[t.Name].(*Codec[V]) }

// Registry is the registry the catalog is bound to.
func (c *Catalog) Registry() *sr.Client { return c.registry }

// MissingSchemaError says that a subject does not hold the schema this build
// writes with: the schemas were not registered (make schemas), or the
// registry lost them.
type MissingSchemaError struct {
	Subject, SchemaFile string
}

func (e *MissingSchemaError) Error() string {
	return fmt.Sprintf("subject %s lacks the schema of %s (register it with make schemas)", e.Subject, e.SchemaFile)
}

// Resolve finds, for each topic, the ID under which the registry holds the
// schema of this build. It registers nothing: that is the job of one step
// (make schemas) run before the services start, so that no build can change
// the registry by starting. A subject without the schema is a
// *MissingSchemaError.
func (c *Catalog) Resolve(ctx context.Context, topics ...*Spec) error {
	var errs []error
	for _, s := range topics {
		r := c.codecs[s.Name].(resolver)
		if r.resolved() {
			continue
		}
		ss, err := c.registry.LookupSchema(ctx, s.Subject, sr.Schema{Schema: s.text, Type: sr.TypeAvro})
		var re *sr.ResponseError
		switch {
		case err == nil:
			r.setID(ss.ID)
		case errors.As(err, &re) && re.StatusCode == http.StatusNotFound:
			errs = append(errs, &MissingSchemaError{Subject: s.Subject, SchemaFile: s.SchemaFile})
		default:
			errs = append(errs, fmt.Errorf("look up the schema of %s: %w", s.Subject, err))
		}
	}
	err := errors.Join(errs...)
	c.mu.Lock()
	c.missing = err
	c.mu.Unlock()
	return err
}

// Await resolves topics, retrying until it succeeds or ctx ends. A service
// calls it before it reads or writes: until then its /readyz says, through
// Missing, which subject lacks which schema.
func (c *Catalog) Await(ctx context.Context, log *slog.Logger, topics ...*Spec) error {
	const every, logEvery = 2 * time.Second, 30 * time.Second
	var logged time.Time
	for {
		err := c.Resolve(ctx, topics...)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(logged) >= logEvery {
			log.Warn("waiting for the schemas this build writes with", "err", err)
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// Missing is what the last Resolve lacked, nil once every topic asked for
// was resolved.
func (c *Catalog) Missing(topics ...*Spec) error {
	for _, s := range topics {
		if !c.codecs[s.Name].(resolver).resolved() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.missing != nil {
				return c.missing
			}
			return fmt.Errorf("the schema of %s is not looked up yet", s.Subject)
		}
	}
	return nil
}

// NewRegistryClient is a registry client with timeouts, so that a registry
// that hangs fails a request instead of a whole service; opts add the
// principal's credentials, in secure mode.
func NewRegistryClient(url string, opts ...sr.ClientOpt) (*sr.Client, error) {
	return sr.NewClient(append([]sr.ClientOpt{sr.URLs(url), sr.HTTPClient(&http.Client{Timeout: 10 * time.Second})}, opts...)...)
}
