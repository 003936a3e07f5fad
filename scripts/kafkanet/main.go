// Command kafkanet forwards TCP connections from the host's loopback to the
// Kafka nodes that scripts/kafka-up runs in network namespaces of their own,
// so that KAFKA_BROKERS=localhost:9092,localhost:9093,localhost:9094 still
// reaches them. Only the first connection of a client goes through it: the
// brokers advertise their namespace's address, and a client talks to them
// there once it has the metadata.
//
//	kafkanet 127.0.0.1:9092=10.209.0.1:9092 127.0.0.1:9093=10.209.0.2:9093 ...
//
// It dials a node with no timeout of its own: while a node is cut off (its
// link down), a connection through kafkanet hangs as a direct one does,
// until the kernel gives up on it. It runs until SIGTERM or SIGINT.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kafkanet LISTEN=UPSTREAM...")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	for _, pair := range os.Args[1:] {
		listen, upstream, ok := strings.Cut(pair, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "kafkanet: %q: want LISTEN=UPSTREAM\n", pair)
			os.Exit(2)
		}
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kafkanet: %v\n", err)
			os.Exit(1)
		}
		go func() { <-ctx.Done(); ln.Close() }()
		go serve(ln, upstream, log)
		log.Info("forwarding", "listen", listen, "upstream", upstream)
	}
	<-ctx.Done()
}

func serve(ln net.Listener, upstream string, log *slog.Logger) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go forward(c, upstream, log)
	}
}

// forward copies both ways until either side closes, passing a half-close
// on, as the client and the broker would see each other directly.
func forward(c net.Conn, upstream string, log *slog.Logger) {
	defer c.Close()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		log.Warn("dial failed", "upstream", upstream, "err", err)
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(u, c)
	go pipe(c, u)
	<-done
	<-done
}
