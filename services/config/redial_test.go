package config

import (
	"context"
	"net"
	"testing"
	"time"
)

// A broker that refuses is dialled again only after a wait that doubles,
// and one that answers is dialled at once.
func TestRedialWaitsAfterARefusal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing := ln.Addr().String()
	ln.Close()
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()

	d := newRedialer()
	ctx := context.Background()
	for i, atLeast := range []time.Duration{0, firstRedial, 2 * firstRedial, 4 * firstRedial} {
		start := time.Now()
		if conn, err := d.dial(ctx, "tcp", refusing); err == nil {
			conn.Close()
			t.Fatalf("dial %d of a closed port succeeded", i+1)
		}
		if took := time.Since(start); took < atLeast {
			t.Errorf("dial %d of a refusing broker after %s, want a wait of at least %s", i+1, took, atLeast)
		}
	}
	if wait := time.Until(d.failed[refusing].until); wait <= 0 {
		t.Errorf("no wait left before the next dial of the refusing broker")
	}
	// Another broker is not held back by the refusing one.
	conn, err := d.dial(ctx, "tcp", up.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if _, waits := d.failed[up.Addr().String()]; waits {
		t.Errorf("a broker that answered has a wait before its next dial")
	}

	// A dial cancelled during its wait returns at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := d.dial(cctx, "tcp", refusing); err != context.Canceled {
		t.Errorf("a cancelled dial returned %v, want context.Canceled", err)
	}
}
