// Package latency summarizes the latencies the operators' tools measure:
// one definition of a percentile for bench, simulate and overload.
package latency

import (
	"slices"
	"time"
)

// Percentile is the p-th percentile (0 < p <= 100) of ds by the
// nearest-rank method, 0 for no samples. ds is left as it was.
func Percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return Sorted(s, p)
}

// Sorted is Percentile of s, which is sorted already: a caller that wants
// several percentiles of one sample sorts it once.
func Sorted(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[max(0, min(rank, len(s)-1))]
}
