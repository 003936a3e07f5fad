package main

import (
	"os"
	"runtime/debug"
)

// The collector's settings when the environment gives none. A payment
// allocates a few kilobytes across HTTP, JSON, Avro and the Kafka clients,
// so at the default GOGC=100 the collector ran several times a second and
// took a large share of the CPU on Black Friday's path: with GOGC=400 the
// edge's capacity on the embedded cluster went from 3,199 to 4,532
// payments/s (make bench ARGS="-only overload", one core for the whole
// shop). The heap may grow to five times what is live instead of twice;
// the soft limit makes the collector work harder before the process
// reaches a gigabyte. GOGC and GOMEMLIMIT in the environment win.
const (
	gcPercent   = 400
	memoryLimit = 1 << 30
)

func tuneCollector() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}
