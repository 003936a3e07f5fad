package view

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/kafkaclient"
)

// Checkpoint is a view's state with the offsets it covers: applying the
// records from Offsets on to State gives the same view as applying every
// record from the start.
type Checkpoint struct {
	Offsets map[string]map[int32]int64 // per topic and partition, the next offset to read
	State   []byte
}

// chunkBytes bounds one record of a checkpoint: a state of several
// megabytes (the users of a big shop) spans several records.
const chunkBytes = 512 << 10

// Checkpoints keeps the checkpoints of one view on a topic of its own, one
// partition, compacted. A checkpoint is one transaction: the state in
// chunks, then a manifest that names the offset of the first chunk and the
// offsets the state covers. Loading reads the topic's tail back to the last
// manifest, then its chunks: it costs the size of one checkpoint, not the
// history of the topic. A checkpoint cut short by a crash is an aborted
// transaction, invisible to the read_committed reader.
type Checkpoints struct {
	topic    string
	brokers  []string
	opts     []kgo.Opt
	writerID string
	writer   *kgo.Client // transactional
}

// manifest is the last record of a checkpoint.
type manifest struct {
	Save    string                     `json:"save"`    // the chunks carry it in their key
	First   int64                      `json:"first"`   // offset of the first chunk
	Chunks  int                        `json:"chunks"`  // how many
	Offsets map[string]map[int32]int64 `json:"offsets"` // what the state covers
	At      time.Time                  `json:"at"`
}

// manifestKey is the key of the manifests of the checkpoints called name.
func manifestKey(name string) string {
	if name == "" {
		return "manifest"
	}
	return "manifest/" + name
}

// OpenCheckpoints connects to the checkpoint topic of a view, for the view
// of instance. Its writes are transactions of the ID <topic>-<instance>,
// the prefix infra/access grants (two instances of a view write their own,
// equally valid, checkpoints).
func OpenCheckpoints(brokers []string, topic, instance string, opts ...kgo.Opt) (*Checkpoints, error) {
	c := &Checkpoints{topic: topic, brokers: brokers, opts: opts, writerID: topic + "-" + instance}
	var err error
	if c.writer, err = c.newWriter(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Checkpoints) newWriter() (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
		kgo.TransactionalID(c.writerID),
		kafkaclient.Transactions(),
		kgo.DefaultProduceTopic(c.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(chunkBytes + 64<<10),
	}, c.opts...)...)
}

// Close releases the writer.
func (c *Checkpoints) Close() { c.writer.Close() }

// Save writes cp as one transaction.
func (c *Checkpoints) Save(ctx context.Context, cp Checkpoint) error { return c.SaveNamed(ctx, "", cp) }

// SaveNamed writes cp as the checkpoint called name: the topic keeps one
// latest checkpoint per name, so that a view split in parts (analytics' by
// partition number) saves and loads each part on its own, whichever
// instance holds it.
func (c *Checkpoints) SaveNamed(ctx context.Context, name string, cp Checkpoint) error {
	err := c.save(ctx, manifestKey(name), cp)
	if errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidTxnState) {
		// The coordinator aborted a checkpoint that outlived its
		// transaction timeout (as when its broker died), or another
		// writer took the ID: either way this writer cannot go on, and
		// the next checkpoint needs a new one. Under transactions
		// version 2 the abort bumped the epoch, and the late commit
		// reads as a retry of that end with the other outcome:
		// INVALID_TXN_STATE rather than PRODUCER_FENCED.
		c.writer.Close()
		w, werr := c.newWriter()
		if werr != nil {
			return errors.Join(err, werr)
		}
		c.writer = w
	}
	return err
}

func (c *Checkpoints) save(ctx context.Context, key string, cp Checkpoint) error {
	var id [8]byte
	_, _ = rand.Read(id[:])
	save := hex.EncodeToString(id[:])
	if err := c.writer.BeginTransaction(); err != nil {
		return err
	}
	commit := false
	defer func() {
		if !commit {
			_ = c.writer.EndTransaction(context.WithoutCancel(ctx), kgo.TryAbort)
		}
	}()
	m := manifest{Save: save, First: -1, Offsets: cp.Offsets, At: time.Now().UTC()}
	var chunks []*kgo.Record
	for off := 0; off < len(cp.State) || off == 0; off += chunkBytes {
		part := cp.State[off:min(off+chunkBytes, len(cp.State))]
		chunks = append(chunks, &kgo.Record{Key: []byte(save + "/" + strconv.Itoa(len(chunks))), Value: part})
		if len(cp.State) == 0 {
			break
		}
	}
	res := c.writer.ProduceSync(ctx, chunks...)
	if err := res.FirstErr(); err != nil {
		return err
	}
	m.First, m.Chunks = res[0].Record.Offset, len(chunks)
	value, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := c.writer.ProduceSync(ctx, &kgo.Record{Key: []byte(key), Value: value}).FirstErr(); err != nil {
		return err
	}
	if err := c.writer.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return err
	}
	commit = true
	return nil
}

// Load returns the latest checkpoint, or nil if there is none.
func (c *Checkpoints) Load(ctx context.Context) (*Checkpoint, error) { return c.LoadNamed(ctx, "") }

// LoadNamed returns the latest checkpoint called name, or nil if there is
// none.
func (c *Checkpoints) LoadNamed(ctx context.Context, name string) (*Checkpoint, error) {
	key := manifestKey(name)
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.brokers...)}, c.opts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// To the last stable offset: what lies beyond is not committed yet.
	ends, err := adm.ListCommittedOffsets(ctx, c.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoints of %s: %w", c.topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, c.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoints of %s: %w", c.topic, err)
	}
	end, _ := ends.Lookup(c.topic, 0)
	start, _ := starts.Lookup(c.topic, 0)
	// Look back from the end for the last manifest, further each time:
	// aborted checkpoints may lie after it.
	for back := int64(16); ; back *= 4 {
		from := max(start.Offset, end.Offset-back)
		recs, err := readRange(ctx, c.brokers, c.opts, c.topic, from, end.Offset)
		if err != nil {
			return nil, err
		}
		for i := len(recs) - 1; i >= 0; i-- {
			if string(recs[i].Key) != key {
				continue
			}
			var m manifest
			if err := json.Unmarshal(recs[i].Value, &m); err != nil {
				return nil, fmt.Errorf("checkpoint manifest at %s offset %d: %w", c.topic, recs[i].Offset, err)
			}
			if m.First >= from { // the look-back holds the whole checkpoint already
				return m.assemble(c.topic, recs[:i])
			}
			chunks, err := readRange(ctx, c.brokers, c.opts, c.topic, m.First, recs[i].Offset)
			if err != nil {
				return nil, err
			}
			return m.assemble(c.topic, chunks)
		}
		if from == start.Offset {
			return nil, nil // no checkpoint yet
		}
	}
}

// assemble puts together the state the manifest names from its chunks
// among recs, the records before the manifest.
func (m manifest) assemble(topic string, recs []*kgo.Record) (*Checkpoint, error) {
	cp := &Checkpoint{Offsets: m.Offsets}
	n := 0
	for _, r := range recs {
		if string(r.Key) == m.Save+"/"+strconv.Itoa(n) {
			cp.State = append(cp.State, r.Value...)
			n++
		}
	}
	if n != m.Chunks {
		return nil, fmt.Errorf("checkpoint %s on %s: %d of %d chunks", m.Save, topic, n, m.Chunks)
	}
	return cp, nil
}

// readRange reads the committed records at offsets [from, to) of partition
// 0 of topic, where to is at most the last stable offset (see ReadRanges).
func readRange(ctx context.Context, brokers []string, opts []kgo.Opt, topic string, from, to int64) ([]*kgo.Record, error) {
	var recs []*kgo.Record
	err := ReadRanges(ctx, brokers, opts, topic, map[int32][2]int64{0: {from, to}}, func(r *kgo.Record) error {
		recs = append(recs, r)
		return nil
	})
	return recs, err
}

// ReadRanges reads the committed records at offsets [from, to) of each
// partition of topic in ranges, to at most the partition's last stable
// offset, and hands each to each, in order within a partition. The topic
// is written in transactions only, so the offset before to is a commit or
// abort marker: with the markers kept, reading until it is seen reads the
// whole range, aborted records aside.
func ReadRanges(ctx context.Context, brokers []string, opts []kgo.Opt, topic string, ranges map[int32][2]int64, each func(*kgo.Record) error) error {
	consume := make(map[int32]kgo.Offset)
	want := make(map[int32]int64) // the partitions still to read, and where they end
	for p, r := range ranges {
		if r[0] < r[1] {
			consume[p], want[p] = kgo.NewOffset().At(r[0]), r[1]
		}
	}
	if len(want) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(64 << 20),
	}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(want) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fetches.Err(); err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		for _, r := range fetches.Records() {
			end, reading := want[r.Partition]
			if !reading || r.Offset >= end {
				continue
			}
			if !r.Attrs.IsControl() {
				if err := each(r); err != nil {
					return err
				}
			}
			if r.Offset >= end-1 {
				delete(want, r.Partition)
			}
		}
	}
	return nil
}
