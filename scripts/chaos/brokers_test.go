package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Broker kills aim only at live nodes of scripts/kafka-up that serve the
// cluster under test: never at a stale PID, nor at another cluster's node.
func TestFindNodesTakesOnlyLiveNodesOfTheCluster(t *testing.T) {
	dir := t.TempDir()
	// A stand-in process whose command line names kafka.Kafka, as a node's does.
	fake := exec.Command("sh", "-c", "sleep 60", "kafka.Kafka")
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Process.Kill(); _ = fake.Wait() })
	node := func(id, pid int, port string, protocol ...string) {
		listener := "PLAINTEXT"
		if len(protocol) > 0 {
			listener = protocol[0]
		}
		nd := filepath.Join(dir, fmt.Sprintf("node-%d", id))
		if err := os.MkdirAll(nd, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("node-%d.pid", id)), []byte(fmt.Sprintf("%d\n", pid)), 0o644)
		os.WriteFile(filepath.Join(nd, "server.properties"), []byte("node.id=1\nlisteners="+listener+"://127.0.0.1:"+port+",CONTROLLER://127.0.0.1:1"+port+"\n"), 0o644)
	}
	node(1, fake.Process.Pid, "9092")                   // live, in KAFKA_BROKERS
	node(2, os.Getpid(), "9093")                        // alive but not a Kafka node
	node(3, fake.Process.Pid, "19094")                  // a node of another cluster
	node(4, 1<<22+12345, "9094")                        // stale PID
	node(5, fake.Process.Pid, "9095", "SASL_PLAINTEXT") // live, secure (SECURE=1 make kafka-up)
	got := findNodes(dir, []string{"localhost:9092", "localhost:9093", "localhost:9094", "localhost:9095"})
	if len(got) != 2 || got[0].id != 1 || got[0].port != "9092" || got[1].id != 5 || got[1].port != "9095" {
		t.Fatalf("findNodes = %+v, want node 1 on 9092 and node 5 on 9095", got)
	}
}
