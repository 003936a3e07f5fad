// Package store is an instance's state on disk: the memories it would
// otherwise read back from Kafka in full at every start, each with the
// offsets of its topic that it covers, in one Pebble database (CockroachDB's
// LSM, in pure Go). Kafka stays the source of truth: a memory holds only
// what Kafka committed, and its covered offsets move in the same atomic
// batch as its entries, so that a restart reads only the tail after them.
// A store that is missing or cannot be read starts empty, and its owners
// read their topics from the start: slower, and exact.
package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// DefaultCacheBytes is the block cache when Options leave it at 0: what
// keeps the hot part of the memories in RAM, whatever their size on disk.
const DefaultCacheBytes = 32 << 20

// memTableBytes is the size of a memtable: writes go there before they are
// flushed to a table file. A larger one makes a rebuild faster; two of
// them can be alive at a time, so it counts twice in the RAM a store takes.
const memTableBytes = 16 << 20

// Options configure a store.
type Options struct {
	// CacheBytes is the block cache's size; 0 takes DefaultCacheBytes.
	CacheBytes int64
	Log        *slog.Logger
}

// Store is one instance's state on disk. It is safe for concurrent use.
type Store struct {
	db   *pebble.DB
	lock *pebble.Lock
	dir  string
	// writing serializes the writes of the memories with their expiry,
	// which reads an entry before it deletes it: a value written in
	// between must not be deleted for the old one. Each holds it for one
	// batch, bounded.
	writing sync.Mutex
	// open guards the database against a Close while a reader or a
	// writer uses it (an HTTP request still answered as the service
	// stops): after Close, they get ErrClosed.
	open   sync.RWMutex
	closed bool
	// Rebuilt says why the store started empty though its directory held
	// one ("" when it did not): the owners' logs say so.
	Rebuilt string
}

// ErrClosed is what a memory's methods return once the store is closed.
var ErrClosed = errors.New("state store closed")

// ErrInUse is returned by Open when another store has the directory open:
// two instances must never share one.
var ErrInUse = errors.New("state dir in use by another instance")

// Open opens the store in dir, creating it if needed. A store that cannot
// be read (corrupt, another format) is deleted and started empty, and the
// log says so: its memories are then read back from Kafka. A directory
// that another store holds, in this process or another, is refused with
// ErrInUse.
func Open(dir string, o Options) (*Store, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	lock, err := pebble.LockDirectory(dir, vfs.Default)
	if err != nil {
		return nil, fmt.Errorf("%w: %s (each instance needs a STATE_DIR of its own): %v", ErrInUse, dir, err)
	}
	cacheBytes := o.CacheBytes
	if cacheBytes <= 0 {
		cacheBytes = DefaultCacheBytes
	}
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref()
	opts := &pebble.Options{
		Cache:        cache,
		MemTableSize: memTableBytes,
		Lock:         lock,
		Logger:       pebbleLog{log},
	}
	for i := range opts.Levels {
		// A lookup of a key the store does not hold (most new keys) then
		// reads no table but the one that may hold it.
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	s := &Store{lock: lock, dir: dir}
	s.db, err = pebble.Open(dir, opts)
	if err != nil {
		s.Rebuilt = "unreadable: " + err.Error()
		log.Warn("state store unreadable, deleted and started empty: its memories are rebuilt from Kafka",
			"dir", dir, "err", err)
		if err := removeDatabase(dir); err != nil {
			lock.Close()
			return nil, fmt.Errorf("state dir %s: unreadable and not deleted: %w", dir, err)
		}
		if s.db, err = pebble.Open(dir, opts); err != nil {
			lock.Close()
			return nil, fmt.Errorf("state dir %s: %w", dir, err)
		}
	}
	return s, nil
}

// removeDatabase deletes Pebble's files in dir, and only those: a
// STATE_DIR set to a directory that holds other files keeps them.
func removeDatabase(dir string) error {
	files, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, f := range files {
		name := f.Name()
		ours := name == "CURRENT" || strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".log") ||
			strings.HasSuffix(name, ".blob")
		for _, prefix := range []string{"OPTIONS-", "MANIFEST-", "marker.", "temporary."} {
			ours = ours || strings.HasPrefix(name, prefix)
		}
		if !ours || f.IsDir() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// Close writes what the store holds in memory to its tables, so that the
// next open has no log to replay, and releases the directory.
func (s *Store) Close() error {
	s.open.Lock()
	defer s.open.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	err := s.db.Flush()
	s.settle()
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

// settleFor bounds how long Close waits for the compactions that a burst
// of writes (a rebuild) left to do.
const settleFor = 10 * time.Second

// settle waits, at most settleFor, until no compaction has run for 120 ms,
// longer than Pebble takes to start the next one it has to do: its open
// waits for a compaction it starts, so a store closed settled opens at
// once, and one closed in the middle of its work would open only once a
// compaction of it is done.
func (s *Store) settle() {
	quiet := 0
	for deadline := time.Now().Add(settleFor); quiet < 6 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s.db.Metrics().Compact.NumInProgress == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
}

// use holds the store open until done is called, or says it is closed.
func (s *Store) use() (done func(), err error) {
	s.open.RLock()
	if s.closed {
		s.open.RUnlock()
		return nil, ErrClosed
	}
	return s.open.RUnlock, nil
}

// Sync returns once every write so far is on disk. The memories do not
// need it (Kafka has what a crash loses of them); it is for a caller that
// must know a write survives a crash, such as a test's control.
func (s *Store) Sync() error {
	done, err := s.use()
	if err != nil {
		return err
	}
	defer done()
	return s.db.LogData(nil, pebble.Sync)
}

// Dir is where the store is.
func (s *Store) Dir() string { return s.dir }

// pebbleLog passes Pebble's messages to the service's log.
type pebbleLog struct{ log *slog.Logger }

func (l pebbleLog) Infof(format string, args ...any) {
	l.log.Debug("state store: " + fmt.Sprintf(format, args...))
}

func (l pebbleLog) Errorf(format string, args ...any) {
	l.log.Error("state store: " + fmt.Sprintf(format, args...))
}

func (l pebbleLog) Fatalf(format string, args ...any) {
	l.log.Error("state store: " + fmt.Sprintf(format, args...))
	os.Exit(1)
}
