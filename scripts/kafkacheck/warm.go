package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/kafkaclient"
)

// warmTopic is the scratch topic of the warm-up, deleted after it.
const warmTopic = "kafka-up-warmup"

// warm runs transactions (begin, a record to each partition, commit) from
// three producers for d, and reads them back read_committed, so that the
// brokers' JIT has compiled the transaction path before the shop's first
// payment. Three transactional IDs land on different coordinators, and the
// records on every leader.
func warm(ctx context.Context, d time.Duration) error {
	cl, adm, err := admin()
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := adm.CreateTopic(ctx, 3, -1, nil, warmTopic); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create %s: %w", warmTopic, err)
	}
	defer func() { _, _ = adm.DeleteTopics(context.WithoutCancel(ctx), warmTopic) }()

	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu    sync.Mutex
		took  []time.Duration // since the last progress line
		wg    sync.WaitGroup
		first error
	)
	for i := range 3 {
		p, _, err := admin(kgo.TransactionalID(fmt.Sprintf("kafka-up-warmup-%d", i)), kafkaclient.Transactions(), kgo.ProducerLinger(0))
		if err != nil {
			return err
		}
		defer p.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				err := transact(ctx, p)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				took = append(took, time.Since(t0))
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	reader, _, err := admin(kgo.ConsumeTopics(warmTopic), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer reader.Close()
	go func() {
		for ctx.Err() == nil {
			reader.PollFetches(ctx)
		}
	}()

	start := time.Now()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	total, first5, last5 := 0, time.Duration(0), time.Duration(0) // p50s of the first and the last 5 s
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			mu.Lock()
			total += len(took)
			mu.Unlock()
			fmt.Printf("kafkacheck: warm-up: %d transactions in %s, p50 %s in the first 5 s, %s in the last\n",
				total, time.Since(start).Round(time.Second), first5, last5)
			return first
		case <-tick.C:
		}
		mu.Lock()
		n, p50 := len(took), median(took)
		took = took[:0]
		mu.Unlock()
		total += n
		if first5 == 0 {
			first5 = p50
		}
		last5 = p50
		fmt.Printf("kafkacheck: warming up the transaction path: %s, %d transactions in the last 5 s, p50 %s\n", time.Since(start).Round(time.Second), n, p50)
	}
}

// transact runs one transaction of a record to each partition; a
// transaction cut by the end of the warm-up aborts and is no error.
func transact(ctx context.Context, p *kgo.Client) error {
	if err := p.BeginTransaction(); err != nil {
		return err
	}
	recs := make([]*kgo.Record, 3)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: warmTopic, Key: []byte{byte('a' + i)}, Value: []byte("warm-up")}
	}
	perr := p.ProduceSync(ctx, recs...).FirstErr()
	if err := p.EndTransaction(context.WithoutCancel(ctx), kgo.TransactionEndTry(perr == nil)); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	return perr
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}
