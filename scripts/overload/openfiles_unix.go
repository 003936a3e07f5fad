//go:build unix

package main

import "syscall"

// openFiles is how many files this process may hold open (Go raises the
// soft limit to the hard one at start), 0 if it cannot tell.
func openFiles() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return int(min(r.Cur, 1<<30))
}
