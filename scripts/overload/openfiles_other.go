//go:build !unix

package main

// openFiles cannot tell here: the pool keeps its bound.
func openFiles() int { return 0 }
