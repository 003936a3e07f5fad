package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/blackfriday-kafka/shop/txn/lag"
)

// Print writes the report as tables, one per group. With prev, the report
// before it, each group also shows how fast it consumed in between.
func Print(w io.Writer, rep lag.Report, prev *lag.Report) error {
	if len(rep.Groups) == 0 {
		fmt.Fprintln(w, "no consumer groups")
	}
	for i, g := range rep.Groups {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if g.Err != "" {
			fmt.Fprintf(w, "%s: %v\n", g.Group, g.Err)
			continue
		}
		fmt.Fprintf(w, "%s  state=%s members=%d lag=%d", g.Group, g.State, len(g.Members), g.Lag())
		if rate, ok := consumedRate(g, rep.At, prev); ok {
			fmt.Fprintf(w, " consumed=%.1f/s", rate)
		}
		fmt.Fprintln(w)
		if len(g.Partitions) > 0 {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  TOPIC\tPARTITION\tCOMMITTED\tLSO\tHWM\tLAG\tMEMBER")
			for _, p := range g.Partitions {
				behind := fmt.Sprint(p.Lag)
				if p.Err != "" {
					behind = "? (" + p.Err + ")"
				}
				committed := fmt.Sprint(p.Committed)
				if p.Committed < 0 {
					committed = "-"
				}
				member := p.Member
				if member == "" {
					member = "-"
				}
				fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%d\t%s\t%s\n", p.Topic, p.Partition, committed, p.LSO, p.HWM, behind, member)
			}
			tw.Flush()
		}
		for _, m := range g.Members {
			var parts []string
			for _, t := range slices.Sorted(maps.Keys(m.Assigned)) {
				parts = append(parts, fmt.Sprintf("%s%v", t, m.Assigned[t]))
			}
			if len(parts) == 0 {
				parts = []string{"nothing assigned"}
			}
			name := m.Name
			if !m.Static {
				name += " (member " + shortID(m.ID) + ")" // client IDs repeat
			}
			fmt.Fprintf(w, "  member %s at %s: %s\n", name, m.Host, strings.Join(parts, " "))
		}
	}
	return nil
}

// consumedRate is how many records per second g committed since prev.
func consumedRate(g lag.Group, at time.Time, prev *lag.Report) (float64, bool) {
	if prev == nil {
		return 0, false
	}
	for _, pg := range prev.Groups {
		if pg.Group == g.Group && pg.Err == "" {
			secs := at.Sub(prev.At).Seconds()
			if secs <= 0 {
				return 0, false
			}
			return float64(g.Committed()-pg.Committed()) / secs, true
		}
	}
	return 0, false
}

func shortID(id string) string {
	if len(id) > 16 {
		return id[:16] + "…"
	}
	return id
}
