package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Memory is one named keyspace of a store: the state of one topic, with the
// offsets of it that the state covers. Keys are bytes, values are bytes,
// each entry has the time it was written at, by which it expires.
//
// Layout: three kinds of keys, each prefixed by its kind and the memory's
// name: the covered offset of each partition (c), the entries (e) and a
// time index of the entries (t), which Expire walks from the oldest, so
// that expiry reads only what it removes.
type Memory struct {
	s    *Store
	name string
}

const (
	kindCovered = 'c'
	kindEntry   = 'e'
	kindTime    = 't'
)

// Memory returns the memory named name, which must not be empty nor hold a
// zero byte.
func (s *Store) Memory(name string) *Memory {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		panic(fmt.Sprintf("store: bad memory name %q", name))
	}
	return &Memory{s: s, name: name}
}

// Mark is how far a memory covers one partition: Next is the first offset
// not in it, Topic the ID of the topic it was read from, so that a topic
// deleted and created again is not taken for the one the memory holds.
type Mark struct {
	Next  int64
	Topic [16]byte
}

// Fit is how a covered offset stands against its partition as Kafka has
// it now; what to do about a misfit is the owner's to say.
type Fit int

const (
	// Fits: the mark is within the partition's offsets, of the same
	// topic; reading resumes at Next.
	Fits Fit = iota
	// OtherTopic: the mark was written from another topic of the same
	// name (deleted and created again, another cluster).
	OtherTopic
	// BehindStart: the topic no longer holds the records just after the
	// mark (retention or a deletion of records went past it).
	BehindStart
	// PastEnd: the mark covers offsets the topic does not have.
	PastEnd
)

// Against says how m fits a partition of the topic whose ID is topic,
// whose first offset is start and whose next is end.
func (m Mark) Against(topic [16]byte, start, end int64) Fit {
	switch {
	case m.Topic != topic:
		return OtherTopic
	case m.Next < start:
		return BehindStart
	case m.Next > end:
		return PastEnd
	}
	return Fits
}

// Entry is one write to a memory: Value under Key, written at At, read from
// Partition; Delete removes the key instead.
type Entry struct {
	Key, Value []byte
	At         time.Time
	Partition  int32
	Delete     bool
}

func (m *Memory) prefix(kind byte) []byte {
	b := make([]byte, 0, len(m.name)+2+64)
	return append(append(append(b, kind), m.name...), 0)
}

func (m *Memory) coveredKey(p int32) []byte {
	return binary.BigEndian.AppendUint32(m.prefix(kindCovered), uint32(p))
}

func (m *Memory) entryKey(key []byte) []byte { return append(m.prefix(kindEntry), key...) }

func (m *Memory) timeKey(at int64, key []byte) []byte {
	return append(binary.BigEndian.AppendUint64(m.prefix(kindTime), stamp(at)), key...)
}

// stamp orders times as unsigned bytes: the sign bit flipped.
func stamp(unixNano int64) uint64 { return uint64(unixNano) ^ 1<<63 }

// An entry's value on disk: when it was written (8 bytes), its partition
// (4), then the value.
const entryHeader = 12

func encodeEntry(e Entry) []byte {
	b := make([]byte, entryHeader, entryHeader+len(e.Value))
	binary.BigEndian.PutUint64(b, uint64(e.At.UnixNano()))
	binary.BigEndian.PutUint32(b[8:], uint32(e.Partition))
	return append(b, e.Value...)
}

var errShort = errors.New("store: entry shorter than its header")

func decodeEntry(b []byte) (at int64, partition int32, value []byte, err error) {
	if len(b) < entryHeader {
		return 0, 0, nil, errShort
	}
	return int64(binary.BigEndian.Uint64(b)), int32(binary.BigEndian.Uint32(b[8:])), b[entryHeader:], nil
}

// Covered returns how far the memory covers partition p; ok is false when
// it holds nothing of p (then its owner reads p from the start).
func (m *Memory) Covered(p int32) (mark Mark, ok bool, err error) {
	done, err := m.s.use()
	if err != nil {
		return Mark{}, false, err
	}
	defer done()
	b, closer, err := m.s.db.Get(m.coveredKey(p))
	if errors.Is(err, pebble.ErrNotFound) {
		return Mark{}, false, nil
	}
	if err != nil {
		return Mark{}, false, err
	}
	defer closer.Close()
	if len(b) != 24 {
		return Mark{}, false, fmt.Errorf("store: covered offset of %s/%d is %d bytes", m.name, p, len(b))
	}
	mark.Next = int64(binary.BigEndian.Uint64(b))
	copy(mark.Topic[:], b[8:])
	return mark, true, nil
}

// Get returns the value of key and when it was written.
func (m *Memory) Get(key []byte) (value []byte, at time.Time, ok bool, err error) {
	done, err := m.s.use()
	if err != nil {
		return nil, time.Time{}, false, err
	}
	defer done()
	// Most keys looked up are not there (a new payment, a first request):
	// a prefix seek reads the bloom filters of every level, the last one
	// included, which a plain Get skips, and answers most of them without
	// a data block (5 µs to 1.1 µs a new key among 1,000,000, BenchmarkSeen
	// of the order step).
	it, err := m.s.db.NewIter(&pebble.IterOptions{UseL6Filters: true})
	if err != nil {
		return nil, time.Time{}, false, err
	}
	defer it.Close()
	k := m.entryKey(key)
	if !it.SeekPrefixGE(k) || !bytes.Equal(it.Key(), k) {
		return nil, time.Time{}, false, it.Error()
	}
	b, err := it.ValueAndErr()
	if err != nil {
		return nil, time.Time{}, false, err
	}
	ns, _, v, err := decodeEntry(b)
	if err != nil {
		return nil, time.Time{}, false, err
	}
	return bytes.Clone(v), time.Unix(0, ns), true, nil
}

// Write applies entries and moves the covered offsets, in one atomic batch:
// after a crash the memory has both or neither. It does not wait for the
// disk: what a crash loses of the last writes, it loses with their offsets,
// and Kafka has them.
//
// An entry that replaces another leaves the old one's time in the index;
// Expire drops it when it comes, checking the entry's own time first.
func (m *Memory) Write(entries []Entry, covered map[int32]Mark) error {
	return m.s.batch(func(b *pebble.Batch) error {
		return m.fill(b, entries, covered)
	})
}

// fill adds entries and covered offsets to b.
func (m *Memory) fill(b *pebble.Batch, entries []Entry, covered map[int32]Mark) error {
	for _, e := range entries {
		k := m.entryKey(e.Key)
		if e.Delete {
			if err := b.Delete(k, nil); err != nil {
				return err
			}
			continue
		}
		if err := b.Set(k, encodeEntry(e), nil); err != nil {
			return err
		}
		if err := b.Set(m.timeKey(e.At.UnixNano(), e.Key), nil, nil); err != nil {
			return err
		}
	}
	for p, mark := range covered {
		v := binary.BigEndian.AppendUint64(make([]byte, 0, 24), uint64(mark.Next))
		if err := b.Set(m.coveredKey(p), append(v, mark.Topic[:]...), nil); err != nil {
			return err
		}
	}
	return nil
}

// Expiring returns the keys of at most max entries written before before,
// oldest first: what Expire would remove, for an owner that must tell
// Kafka first (a tombstone each, in a compacted topic).
func (m *Memory) Expiring(before time.Time, max int) ([][]byte, error) {
	done, err := m.s.use()
	if err != nil {
		return nil, err
	}
	defer done()
	var keys [][]byte
	err = m.walkOld(before, max, func(key []byte, live bool) error {
		if live {
			keys = append(keys, bytes.Clone(key))
		}
		return nil
	})
	return keys, err
}

// Expire removes the entries written before before, and their index, at
// most max index records a call, oldest first, in one batch: an owner calls
// it in steps, on its own goroutine, so that readers and writers never wait
// long on it. It returns how many index records it went through; fewer
// than max means nothing older is left.
func (m *Memory) Expire(before time.Time, max int) (int, error) {
	n := 0
	err := m.s.batch(func(b *pebble.Batch) error {
		return m.walkOld(before, max, func(key []byte, live bool) error {
			n++
			if live {
				return b.Delete(m.entryKey(key), nil)
			}
			return nil
		}, b)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// walkOld calls fn with the key of each index record older than before, at
// most max of them, and whether the entry it points to is still the one
// written then (not replaced since nor deleted). With a batch, it deletes
// the index records there.
func (m *Memory) walkOld(before time.Time, max int, fn func(key []byte, live bool) error, del ...*pebble.Batch) error {
	lower := m.prefix(kindTime)
	upper := binary.BigEndian.AppendUint64(m.prefix(kindTime), stamp(before.UnixNano()))
	it, err := m.s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok && n < max; ok = it.Next() {
		n++
		ik := it.Key()
		at := int64(stamp(int64(binary.BigEndian.Uint64(ik[len(lower):]))))
		key := ik[len(lower)+8:]
		v, closer, err := m.s.db.Get(m.entryKey(key))
		live := false
		switch {
		case errors.Is(err, pebble.ErrNotFound):
		case err != nil:
			return err
		default:
			ns, _, _, derr := decodeEntry(v)
			closer.Close()
			live = derr == nil && ns == at
		}
		if err := fn(key, live); err != nil {
			return err
		}
		if len(del) > 0 {
			if err := del[0].Delete(ik, nil); err != nil {
				return err
			}
		}
	}
	return it.Error()
}

// Forget drops what the memory holds of partition p, and its covered
// offset: p is then read from the start. It goes through every entry: it is
// for a partition found stale at start, rare; Reset drops a whole memory
// at once.
func (m *Memory) Forget(p int32) error {
	done, err := m.s.use()
	if err != nil {
		return err
	}
	defer done()
	m.s.writing.Lock()
	defer m.s.writing.Unlock()
	lower := m.prefix(kindEntry)
	it, err := m.s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return err
	}
	defer it.Close()
	b := m.s.db.NewBatch()
	defer func() { b.Close() }()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if _, part, _, err := decodeEntry(v); err == nil && part != p {
			continue
		}
		if err := b.Delete(it.Key(), nil); err != nil {
			return err
		}
		if b.Len() >= 4<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			b.Close()
			b = m.s.db.NewBatch()
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	// The index records of the entries dropped stay until they expire:
	// Expire finds no entry behind them and drops them then.
	if err := b.Delete(m.coveredKey(p), nil); err != nil {
		return err
	}
	return b.Commit(pebble.NoSync)
}

// Reset drops everything the memory holds, its entries, their index and
// its covered offsets, in one batch.
func (m *Memory) Reset() error {
	return m.s.batch(func(b *pebble.Batch) error {
		for _, kind := range []byte{kindCovered, kindEntry, kindTime} {
			lower := m.prefix(kind)
			if err := b.DeleteRange(lower, prefixEnd(lower), nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// batch fills one batch under the store's write lock and commits it,
// without waiting for the disk (see Write).
func (s *Store) batch(fill func(b *pebble.Batch) error) error {
	done, err := s.use()
	if err != nil {
		return err
	}
	defer done()
	s.writing.Lock()
	defer s.writing.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	if err := fill(b); err != nil {
		return err
	}
	return b.Commit(pebble.NoSync)
}

// prefixEnd is the first key after every key that starts with prefix,
// whose last byte (the name's terminating zero) is never 0xff.
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	end[len(end)-1]++
	return end
}
