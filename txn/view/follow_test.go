package view_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/blackfriday-kafka/shop/txn/view"
)

// A view started while the cluster heals (a leader just elected, its high
// watermark not caught up) waits and starts: the service does not die
// because one broker was not ready for a moment.
func TestFollowerStartsOnceTheClusterAnswers(t *testing.T) {
	const topic = "orders"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.ProduceSync(ctx, &kgo.Record{Value: []byte("order 1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var refused atomic.Int32
	c.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if refused.Load() >= 3 {
			return nil, nil, false
		}
		refused.Add(1)
		resp := req.(*kmsg.ListOffsetsRequest).ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range req.(*kmsg.ListOffsetsRequest).Topics {
			t := kmsg.NewListOffsetsResponseTopic()
			t.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				p := kmsg.NewListOffsetsResponseTopicPartition()
				p.Partition, p.ErrorCode = rp.Partition, kerr.OffsetNotAvailable.Code
				t.Partitions = append(t.Partitions, p)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil, true
	})

	f, err := view.Follow(c.ListenAddrs(), slog.New(slog.NewTextHandler(io.Discard, nil)), []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- f.Run(ctx, func(_ context.Context, r *kgo.Record) error {
			got <- string(r.Value)
			return nil
		})
	}()
	select {
	case v := <-got:
		if v != "order 1" || refused.Load() < 3 {
			t.Fatalf("read %q after %d refusals", v, refused.Load())
		}
	case err := <-done:
		t.Fatalf("the view stopped instead of waiting for the cluster: %v", err)
	case <-ctx.Done():
		t.Fatal("the view never started")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
