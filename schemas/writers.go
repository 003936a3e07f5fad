package schemas

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// Writer is a schema met in a record's header, as the registry holds it.
type Writer struct {
	ID       int
	Schema   avro.Schema
	Subjects []string // the subjects that hold this schema
}

// writers caches the registry's answers about schema IDs. An ID the
// registry does not know is not cached: it may be registered a moment from
// now.
type writers struct {
	registry *sr.Client

	mu      sync.Mutex
	known   map[int]*Writer
	refused map[int]*RecordError // IDs that will never decode
}

func (ws *writers) init(registry *sr.Client) {
	ws.registry = registry
	ws.known = make(map[int]*Writer)
	ws.refused = make(map[int]*RecordError)
}

func (ws *writers) get(ctx context.Context, id int) (*Writer, error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if w, ok := ws.known[id]; ok {
		return w, nil
	}
	if re, ok := ws.refused[id]; ok {
		return nil, re
	}
	usages, err := ws.registry.SchemaUsagesByID(ctx, id)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return nil, refuse(UnknownSchemaID, "schema ID %d is not in the registry", id)
		}
		return nil, fmt.Errorf("look up schema ID %d: %w", id, err)
	}
	if len(usages) == 0 {
		return nil, refuse(UnknownSchemaID, "schema ID %d is under no subject", id)
	}
	schema, err := parse(usages[0].Schema.Schema)
	if err != nil {
		ws.refused[id] = refuse(AvroDecode, "schema ID %d does not parse: %v", id, err)
		return nil, ws.refused[id]
	}
	w := &Writer{ID: id, Schema: schema}
	for _, u := range usages {
		if !slices.Contains(w.Subjects, u.Subject) {
			w.Subjects = append(w.Subjects, u.Subject)
		}
	}
	ws.known[id] = w
	return w, nil
}
