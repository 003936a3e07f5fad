package view

import (
	"bytes"
	"encoding/gob"
	"fmt"
)

// Composite checkpoints several states as one, for a follower that folds
// its records into more than one: analytics' figures and its deliveries,
// say. A checkpoint of another number of states is not restored.
func Composite(states ...State) State { return composite(states) }

type composite []State

func (c composite) Snapshot() ([]byte, error) {
	parts := make([][]byte, len(c))
	for i, s := range c {
		b, err := s.Snapshot()
		if err != nil {
			return nil, err
		}
		parts[i] = b
	}
	var buf bytes.Buffer
	err := gob.NewEncoder(&buf).Encode(parts)
	return buf.Bytes(), err
}

func (c composite) Restore(b []byte) error {
	var parts [][]byte
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&parts); err != nil {
		return err
	}
	if len(parts) != len(c) {
		return fmt.Errorf("checkpoint of %d states, want %d", len(parts), len(c))
	}
	// All or nothing: a state restored before another one failed goes
	// back to what it was, or the follower, reading from the start, would
	// fold the checkpoint's records into it a second time.
	before := make([][]byte, len(c))
	for i, s := range c {
		b, err := s.Snapshot()
		if err != nil {
			return err
		}
		before[i] = b
	}
	for i, s := range c {
		if err := s.Restore(parts[i]); err != nil {
			for j := range i {
				_ = c[j].Restore(before[j])
			}
			return err
		}
	}
	return nil
}
