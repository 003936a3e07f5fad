package order

import "os"

// KillPoint is where the order process kills itself, for the tests that
// show what survives a SIGKILL there; empty in production.
type KillPoint string

const (
	// KillBeforeCommit kills the process once the open transaction holds
	// ten orders: produced, not committed, not in the store.
	KillBeforeCommit KillPoint = "before-commit"
	// KillAfterCommit kills the process once a transaction with orders has
	// committed, before the store notes them.
	KillAfterCommit KillPoint = "after-commit"
	// KillStoredBeforeCommit is the control: the process writes each
	// order to its store as it makes it, before the transaction commits,
	// and kills itself once the open transaction holds ten of them. The
	// store then remembers orders Kafka never committed.
	KillStoredBeforeCommit KillPoint = "stored-before-commit"
)

// KillPoints are the kill points there are.
var KillPoints = []KillPoint{KillBeforeCommit, KillAfterCommit, KillStoredBeforeCommit}

// killAfterOrders is how many orders the open transaction holds when a
// kill point before its commit is reached.
const killAfterOrders = 10

// kill ends the process with SIGKILL at a kill point, for the tests only.
// It first puts on disk what the store was written before this point: a
// store writes without waiting for the disk, and its last writes would
// otherwise die with the process too (the store would then hold nothing,
// and be rebuilt), where the test wants what the point alone loses.
func (o *ordered) kill(where string) {
	o.log.Warn("killing the process for a test", "kill_at", o.killAt, "where", where)
	if err := o.db.Sync(); err != nil {
		o.log.Error("the store could not be synced before the kill", "err", err)
	}
	p, err := os.FindProcess(os.Getpid())
	if err == nil {
		err = p.Kill()
	}
	o.log.Error("could not kill the process", "err", err)
	os.Exit(2)
}
