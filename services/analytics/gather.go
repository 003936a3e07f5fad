package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/blackfriday-kafka/shop/txn/view"
)

// How an instance answers for the whole shop: it asks the group who holds
// each partition number (every member advertises its URL in its group
// metadata), asks each holder for its partitions' figures at
// /analytics/partitions, and merges them. The figures are sums and the
// users' bitmaps, so the merge is exact; a partition whose holder is not
// known (the group rebalances), does not answer in time, or is still
// catching up is named as missing rather than left out silently.

// partitionsPath is where an instance shows the figures of the partitions
// it holds, for the other instances.
const partitionsPath = "/analytics/partitions"

// gatherTimeout bounds an answer for the whole shop: the group's
// description and every holder's figures, asked side by side.
const gatherTimeout = 2 * time.Second

// maxHeldBytes bounds a holder's answer: the figures of its partitions,
// the users' bitmaps first of all (a million users take a few MiB).
const maxHeldBytes = 32 << 20

// Held is /analytics/partitions: the figures of the partitions an instance
// holds.
type Held struct {
	Instance   string          `json:"instance"`
	Address    string          `json:"address"`
	MemberID   string          `json:"member_id"`
	Partitions []HeldPartition `json:"partitions"`
}

// HeldPartition is one partition's figures, with how fresh they are.
type HeldPartition struct {
	Partition int32            `json:"partition"`
	CaughtUp  bool             `json:"caught_up"` // it has read what was committed when it came
	Since     time.Time        `json:"held_since"`
	Position  map[string]int64 `json:"position"` // by topic, the next offset to read
	AsOf      time.Time        `json:"as_of"`    // when the figures were read out
	Figures   []byte           `json:"figures"`  // the partition's figures as a checkpoint keeps them

	stats *Stats // this instance's own, not encoded
}

// Coverage is what an answer for the whole shop covers: added to
// /analytics and /analytics/live.
type Coverage struct {
	Complete   bool              `json:"complete"`   // every partition is counted
	Partitions int32             `json:"partitions"` // how many there are
	Missing    []int32           `json:"missing_partitions"`
	Why        map[string]string `json:"missing_because,omitempty"` // by partition
	Instances  []Covered         `json:"instances"`
	AnsweredBy string            `json:"answered_by"` // the instance that merged
}

// Covered is an instance that holds partitions, and what it answered.
type Covered struct {
	Instance   string      `json:"instance"`
	Address    string      `json:"address"`
	Partitions []Freshness `json:"partitions"` // the ones counted
	Error      string      `json:"error,omitempty"`
	member     view.Member
}

// Freshness is how recent a partition's counted figures are.
type Freshness struct {
	Partition int32            `json:"partition"`
	AsOf      time.Time        `json:"as_of"`
	Position  map[string]int64 `json:"position"`
}

// ReportAll is /analytics: the shop's figures and what they cover.
type ReportAll struct {
	Report
	Coverage
}

// LiveAll is /analytics/live: the figures that move, and what they cover.
type LiveAll struct {
	Live
	Coverage
}

// held is this instance's partitions; encode says whether their figures
// are wanted encoded (for another instance) or as they are.
func (s *Service) held(encode bool) (Held, error) {
	h := Held{Instance: s.instance, Address: s.Address(), MemberID: s.figures.MemberID(), Partitions: []HeldPartition{}}
	for _, o := range s.figures.Owned() {
		p := HeldPartition{Partition: o.Partition, CaughtUp: o.CaughtUp, Since: o.Since, Position: o.Position, AsOf: time.Now().UTC(), stats: o.State}
		if encode {
			b, err := o.State.Snapshot()
			if err != nil {
				return h, fmt.Errorf("partition %d: %w", o.Partition, err)
			}
			p.Figures, p.stats = b, nil
		}
		h.Partitions = append(h.Partitions, p)
	}
	return h, nil
}

// heldStats is the figures of the partitions this instance holds, merged:
// what its metrics show.
func (s *Service) heldStats() *Stats {
	all := newStats()
	for _, o := range s.figures.Owned() {
		all.merge(o.State)
	}
	return all
}

// gathered is a gather's result, shared by the requests that wait on it.
type gathered struct {
	figures *Stats
	cov     Coverage
}

// gather is the figures of every partition, from their holders, merged,
// and what they cover. The requests that come while one gather runs share
// its result (they only read it): every open dashboard asks each second,
// and each gather asks every holder.
func (s *Service) gather(ctx context.Context) (*Stats, Coverage) {
	v, _, _ := s.gathering.Do("gather", func() (any, error) {
		figures, cov := s.collect(context.WithoutCancel(ctx))
		return gathered{figures, cov}, nil
	})
	g := v.(gathered)
	return g.figures, g.cov
}

// collect asks the group who holds what and every holder for its figures.
func (s *Service) collect(ctx context.Context) (*Stats, Coverage) {
	ctx, cancel := context.WithTimeout(ctx, gatherTimeout)
	defer cancel()
	all := newStats()
	cov := Coverage{AnsweredBy: s.instance, Missing: []int32{}, Instances: []Covered{}, Why: map[string]string{}}
	n, err := s.figures.Partitions(ctx)
	if err != nil {
		cov.Why["*"] = "partitions not known: " + err.Error()
		return all, cov
	}
	cov.Partitions = n
	why := func(p int32, reason string) { cov.Why[strconv.Itoa(int(p))] = reason }
	members, err := s.figures.Owners(ctx)
	if err != nil {
		members = nil
		for p := range n {
			why(p, "holders not known: "+err.Error())
		}
	}
	holder := make(map[int32]string) // member ID, by partition
	for _, m := range members {
		for _, p := range m.Partitions {
			holder[p] = m.ID
		}
	}
	// Ask every holder at once; this instance answers for itself.
	answers := make([]Covered, 0, len(members))
	held := make([]Held, 0, len(members))
	for _, m := range members {
		if len(m.Partitions) > 0 {
			answers = append(answers, Covered{Instance: m.Name, Address: m.Address, Partitions: []Freshness{}, member: m})
			held = append(held, Held{})
		}
	}
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			var err error
			if answers[i].member.ID == s.figures.MemberID() {
				held[i], err = s.held(false)
			} else {
				held[i], err = s.ask(ctx, answers[i].Address)
			}
			if err != nil {
				answers[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	counted := make(map[int32]bool, n)
	for i, a := range answers {
		if a.Error != "" {
			for _, p := range a.member.Partitions {
				why(p, fmt.Sprintf("its holder %s did not answer: %s", a.Instance, a.Error))
			}
			continue
		}
		if held[i].Instance != "" {
			answers[i].Instance = held[i].Instance
		}
		for _, hp := range held[i].Partitions {
			if holder[hp.Partition] != a.member.ID || counted[hp.Partition] {
				continue // not (or no longer) its to answer for
			}
			if !hp.CaughtUp {
				why(hp.Partition, fmt.Sprintf("its holder %s is still reading it, since %s", answers[i].Instance, hp.Since.Format(time.RFC3339)))
				continue
			}
			st := hp.stats
			if st == nil {
				st = newStats()
				if err := st.Restore(hp.Figures); err != nil {
					why(hp.Partition, fmt.Sprintf("the figures of %s do not read: %v", answers[i].Instance, err))
					continue
				}
			}
			all.merge(st)
			counted[hp.Partition] = true
			answers[i].Partitions = append(answers[i].Partitions, Freshness{Partition: hp.Partition, AsOf: hp.AsOf, Position: hp.Position})
		}
		for _, p := range a.member.Partitions {
			if _, said := cov.Why[strconv.Itoa(int(p))]; !counted[p] && !said {
				why(p, fmt.Sprintf("its holder %s has not taken it yet", answers[i].Instance))
			}
		}
	}
	cov.Instances = answers
	for p := range n {
		if counted[p] {
			continue
		}
		cov.Missing = append(cov.Missing, p)
		if _, said := cov.Why[strconv.Itoa(int(p))]; !said {
			why(p, "no holder: the group is rebalancing")
		}
	}
	slices.Sort(cov.Missing)
	cov.Complete = len(cov.Missing) == 0
	if len(cov.Why) == 0 {
		cov.Why = nil
	}
	return all, cov
}

// ask is another instance's partitions.
func (s *Service) ask(ctx context.Context, address string) (Held, error) {
	var h Held
	if address == "" {
		return h, fmt.Errorf("it advertises no address")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, address+partitionsPath, nil)
	if err != nil {
		return h, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return h, fmt.Errorf("%s: %s", partitionsPath, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxHeldBytes)).Decode(&h); err != nil {
		return h, fmt.Errorf("%s: %w", partitionsPath, err)
	}
	return h, nil
}
