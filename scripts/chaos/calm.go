package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// settleAfter is how long the embedded cluster is left alone after a fault
// ends before the groups are asked whether they are stable: a killed
// instance is back and has joined by then.
const settleAfter = 3 * time.Second

// calm reports whether a new fault may begin. On make kafka-up faults
// overlap as they come. On the embedded cluster they come one at a time,
// each once every group is stable again: kfake drops a member whose
// JoinGroup waits longer than its session while another member is slow to
// rejoin (paused, or held by a paused dependency), and every new join
// pushes its rebalance deadline back, so overlapping faults can hold a
// group in a rebalance for good, which Kafka does not (docs/real-kafka.md).
func (c *chaos) calm(now time.Time) bool {
	if !c.o.Embedded {
		return true
	}
	if (c.pauser != nil && !c.pauser.idle()) || now.Sub(c.lastFault) < settleAfter {
		return false
	}
	for _, d := range c.deps {
		if d.pausing() {
			return false
		}
	}
	if now.Sub(c.askedAt) < time.Second {
		return c.stable // asked within the last second
	}
	c.askedAt, c.stable = now, false
	described, err := c.describeGroups()
	if err != nil {
		return false
	}
	for _, g := range described {
		if g.State != "Stable" && g.State != "Empty" {
			return false
		}
	}
	c.stable = true
	return true
}

// dependencyDue reports whether a dependency's pause is due and not begun.
func (c *chaos) dependencyDue(now time.Time) bool {
	for _, d := range c.deps {
		if d.fault == nil && !d.done && !now.Before(d.at) {
			return true
		}
	}
	return false
}

// faultEnded notes that a fault ended (or a kill was made), for calm.
func (c *chaos) faultEnded(now time.Time) { c.lastFault, c.stable = now, false }

// describeGroups describes every consumer group of the cluster.
func (c *chaos) describeGroups() (kadm.DescribedGroups, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.admin.DescribeGroups(ctx)
}

// groups says in what state each consumer group is, and how many
// partitions its members hold: a group stuck in a rebalance shows here.
func (c *chaos) groups() string {
	described, err := c.describeGroups()
	if err != nil {
		return err.Error()
	}
	var states []string
	for _, g := range described.Sorted() {
		held := 0
		for _, m := range g.Members {
			if a, ok := m.Assigned.AsConsumer(); ok {
				for _, t := range a.Topics {
					held += len(t.Partitions)
				}
			}
		}
		states = append(states, fmt.Sprintf("%s %s, %d members holding %d partitions", g.Group, g.State, len(g.Members), held))
	}
	return strings.Join(states, "; ")
}
