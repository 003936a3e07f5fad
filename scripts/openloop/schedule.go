package openloop

import "time"

// schedule is when each payment of a run is due, whatever the earlier ones
// are doing: the i-th at start + i/rate, n in all.
type schedule struct {
	start time.Time
	rate  int // payments a second
	n     int
}

// offset is how long after the start payment i is due, to the nanosecond
// below.
func (s schedule) offset(i int) time.Duration {
	return time.Duration(int64(i) * int64(time.Second) / int64(s.rate))
}

// at is when payment i is due.
func (s schedule) at(i int) time.Time { return s.start.Add(s.offset(i)) }

// due is how many payments are due at now: those whose offset has passed,
// the first of them at the start itself.
func (s schedule) due(now time.Time) int {
	e := now.Sub(s.start)
	if e < 0 {
		return 0
	}
	if e >= s.offset(s.n-1) {
		return s.n
	}
	// Payment i is due once floor(i*1s/rate) <= e, that is for every
	// i < (e+1)*rate/1s: there are ceil((e+1)*rate/1s) of them. Below the
	// last offset, e*rate < n*1s, which the bound on n keeps in an int64.
	sec := int64(time.Second)
	return int(((int64(e)+1)*int64(s.rate) + sec - 1) / sec)
}
