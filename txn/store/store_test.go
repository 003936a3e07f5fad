package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var topicA = [16]byte{1, 2, 3}

func TestReopenKeepsEntriesAndCoveredOffsets(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	at := time.Unix(1700000000, 123)
	m := s.Memory("ledger")
	if err := m.Write([]Entry{
		{Key: []byte("a"), Value: []byte("first"), At: at, Partition: 0},
		{Key: []byte("b"), Value: []byte("second"), At: at, Partition: 1},
	}, map[int32]Mark{0: {Next: 7, Topic: topicA}, 1: {Next: 3, Topic: topicA}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Write([]Entry{{Key: []byte("b"), Delete: true}}, map[int32]Mark{1: {Next: 4, Topic: topicA}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	defer s.Close()
	if s.Rebuilt != "" {
		t.Fatalf("a clean store was rebuilt: %s", s.Rebuilt)
	}
	m = s.Memory("ledger")
	v, gotAt, ok, err := m.Get([]byte("a"))
	if err != nil || !ok || string(v) != "first" || !gotAt.Equal(at) {
		t.Fatalf("a after reopen = %q, %v, %v, %v; want first at %v", v, gotAt, ok, err, at)
	}
	if _, _, ok, _ := m.Get([]byte("b")); ok {
		t.Fatal("b was deleted and is back after reopen")
	}
	for p, want := range map[int32]int64{0: 7, 1: 4} {
		mark, ok, err := m.Covered(p)
		if err != nil || !ok || mark.Next != want || mark.Topic != topicA {
			t.Fatalf("covered %d = %+v, %v, %v; want %d of topic A", p, mark, ok, err, want)
		}
	}
	if _, ok, _ := m.Covered(2); ok {
		t.Fatal("partition 2 was never written and is covered")
	}
	// Memories are apart: another name holds nothing of this one.
	if _, _, ok, _ := s.Memory("orders").Get([]byte("a")); ok {
		t.Fatal("memory orders sees memory ledger's key")
	}
}

// The child writes batches until it is killed; batch i holds key i and
// covers offset i+1 of partition 0.
func TestMain(m *testing.M) {
	if dir := os.Getenv("STORE_TEST_WRITER"); dir != "" {
		s, err := Open(dir, Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		mem := s.Memory("m")
		for i := int64(0); ; i++ {
			e := Entry{Key: []byte(strconv.FormatInt(i, 10)), Value: bytes.Repeat([]byte{'v'}, 512), At: time.Now()}
			if err := mem.Write([]Entry{e}, map[int32]Mark{0: {Next: i + 1, Topic: topicA}}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			if i == 1000 {
				fmt.Println("writing")
			}
		}
	}
	os.Exit(m.Run())
}

func TestKillKeepsEntriesAndOffsetsTogether(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STORE_TEST_WRITER="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 8)
	if _, err := out.Read(line); err != nil {
		t.Fatalf("the writer did not start: %v", err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	s := open(t, dir)
	defer s.Close()
	m := s.Memory("m")
	mark, ok, err := m.Covered(0)
	// Writes do not wait for the disk: the last ones may be lost, with
	// their offsets. Most of a thousand are there.
	if err != nil || !ok || mark.Next < 100 {
		t.Fatalf("covered after the kill = %+v, %v, %v; want most of the first 1000 batches", mark, ok, err)
	}
	// Every batch covered is there, none past it.
	for i := int64(0); i < mark.Next; i++ {
		if _, _, ok, err := m.Get([]byte(strconv.FormatInt(i, 10))); !ok || err != nil {
			t.Fatalf("key %d is covered (next %d) and missing: %v", i, mark.Next, err)
		}
	}
	if _, _, ok, _ := m.Get([]byte(strconv.FormatInt(mark.Next, 10))); ok {
		t.Fatalf("key %d is there and its offset is not covered", mark.Next)
	}
	t.Logf("%d batches survived the kill", mark.Next)
}

// countKeys counts what is on disk under a kind of key of memory m.
func countKeys(t *testing.T, m *Memory, kind byte) int {
	t.Helper()
	lower := m.prefix(kind)
	it, err := m.s.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.SeekGE(lower); ok && bytes.HasPrefix(it.Key(), lower); ok = it.Next() {
		n++
	}
	return n
}

func TestExpireRemovesOldEntriesAndTheirIndexInSteps(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	m := s.Memory("ledger")
	t0 := time.Unix(1700000000, 0)
	var entries []Entry
	for i := range 10 {
		entries = append(entries, Entry{Key: []byte("old" + strconv.Itoa(i)), Value: []byte("x"), At: t0.Add(time.Duration(i) * time.Second)})
	}
	entries = append(entries,
		Entry{Key: []byte("new"), Value: []byte("y"), At: t0.Add(time.Hour)},
		// Written early, then again late: the late write stays.
		Entry{Key: []byte("rewritten"), Value: []byte("early"), At: t0},
	)
	if err := m.Write(entries, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Write([]Entry{{Key: []byte("rewritten"), Value: []byte("late"), At: t0.Add(time.Hour)}}, nil); err != nil {
		t.Fatal(err)
	}
	before := t0.Add(time.Minute)
	expiring, err := m.Expiring(before, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(expiring) != 10 || string(expiring[0]) != "old0" {
		t.Fatalf("expiring = %q; want old0 to old9, oldest first, and not the rewritten key", expiring)
	}
	steps := 0
	for {
		n, err := m.Expire(before, 4)
		if err != nil {
			t.Fatal(err)
		}
		if n > 4 {
			t.Fatalf("a step of at most 4 went through %d", n)
		}
		steps++
		if n < 4 {
			break
		}
	}
	if steps != 3 { // 11 index records: 4, 4, 3
		t.Fatalf("expiry took %d steps; want 3", steps)
	}
	for i := range 10 {
		if _, _, ok, _ := m.Get([]byte("old" + strconv.Itoa(i))); ok {
			t.Fatalf("old%d outlived its expiry", i)
		}
	}
	if v, _, ok, _ := m.Get([]byte("rewritten")); !ok || string(v) != "late" {
		t.Fatalf("rewritten = %q, %v; its late write must stay", v, ok)
	}
	if v, _, ok, _ := m.Get([]byte("new")); !ok || string(v) != "y" {
		t.Fatalf("new = %q, %v; want y", v, ok)
	}
	// Removed, not hidden: on disk are two entries and their two index
	// records, nothing else (the control: 12 entries, 13 index records
	// before).
	if e, i := countKeys(t, m, kindEntry), countKeys(t, m, kindTime); e != 2 || i != 2 {
		t.Fatalf("on disk after expiry: %d entries, %d index records; want 2 and 2", e, i)
	}
}

func TestCorruptStoreIsRebuiltEmptyAndSaysSo(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.Memory("m").Write([]Entry{{Key: []byte("k"), Value: []byte("v"), At: time.Now()}},
		map[int32]Mark{0: {Next: 1, Topic: topicA}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	manifests, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(manifests) == 0 {
		t.Fatal("no manifest to corrupt")
	}
	for _, f := range manifests {
		if err := os.WriteFile(f, bytes.Repeat([]byte{0xde, 0xad}, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	other := filepath.Join(dir, "notes.txt") // not the store's: stays
	os.WriteFile(other, []byte("mine"), 0o644)

	var log lockedBuffer
	s, err := Open(dir, Options{Log: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatalf("a corrupt store must be rebuilt, not refused: %v", err)
	}
	defer s.Close()
	if s.Rebuilt == "" || !strings.Contains(log.String(), "rebuilt from Kafka") {
		t.Fatalf("rebuilt %q, log %q; want the reason in both", s.Rebuilt, log.String())
	}
	m := s.Memory("m")
	if _, ok, _ := m.Covered(0); ok {
		t.Fatal("the rebuilt store still claims to cover partition 0")
	}
	if err := m.Write([]Entry{{Key: []byte("k2"), Value: []byte("v"), At: time.Now()}}, nil); err != nil {
		t.Fatalf("the rebuilt store does not take writes: %v", err)
	}
	if b, err := os.ReadFile(other); err != nil || string(b) != "mine" {
		t.Fatalf("a file that is not the store's was touched: %q, %v", b, err)
	}
}

func TestTwoOpensOfOneDirAreRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "STATE_DIR") {
		t.Fatalf("second open = %v; want ErrInUse naming STATE_DIR", err)
	}
	// Control: once the first is closed, the dir opens.
	s.Close()
	s = open(t, dir)
	s.Close()
}

func TestForgetDropsOnePartitionResetAll(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	m := s.Memory("m")
	now := time.Now()
	if err := m.Write([]Entry{
		{Key: []byte("p0"), Value: []byte("v"), At: now, Partition: 0},
		{Key: []byte("p1"), Value: []byte("v"), At: now, Partition: 1},
	}, map[int32]Mark{0: {Next: 1}, 1: {Next: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Forget(1); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := m.Get([]byte("p1")); ok {
		t.Fatal("p1 outlived Forget(1)")
	}
	if _, ok, _ := m.Covered(1); ok {
		t.Fatal("partition 1 still covered after Forget(1)")
	}
	if _, _, ok, _ := m.Get([]byte("p0")); !ok {
		t.Fatal("Forget(1) dropped partition 0's key")
	}
	if _, ok, _ := m.Covered(0); !ok {
		t.Fatal("Forget(1) dropped partition 0's offset")
	}
	if err := m.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := m.Get([]byte("p0")); ok {
		t.Fatal("p0 outlived Reset")
	}
	if _, ok, _ := m.Covered(0); ok {
		t.Fatal("partition 0 still covered after Reset")
	}
	if n := countKeys(t, m, kindTime); n != 0 {
		t.Fatalf("%d index records outlived Reset", n)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A store closed while a request still asks it (a service stopping) says
// so; it does not crash the process.
func TestClosedStoreSaysSo(t *testing.T) {
	s := open(t, t.TempDir())
	m := s.Memory("m")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := m.Get([]byte("k")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
	if err := m.Write(nil, map[int32]Mark{0: {Next: 1}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}
}
