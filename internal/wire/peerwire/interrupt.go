package peerwire

import (
	"context"
	"sync"
	"time"
)

// Deadliner is a connection whose blocked reads and writes a deadline ends.
type Deadliner interface {
	SetDeadline(time.Time) error
}

// Interrupt makes the end of ctx expire c's deadlines, so that a blocked
// read or write returns. The stop it returns undoes that, and once stop has
// returned the interrupt either never happens or has finished: a deadline
// the caller sets after stop is never overwritten by a late interrupt. That
// matters for a connection that outlives ctx (a watch's connection lent to
// a probe, a dialled connection handed to its owner). context.AfterFunc's
// own stop does not wait for a function already started. stop may be
// called more than once.
func Interrupt(ctx context.Context, c Deadliner) (stop func()) {
	done := make(chan struct{})
	unhook := context.AfterFunc(ctx, func() {
		defer close(done)
		_ = c.SetDeadline(time.Unix(1, 0))
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			if !unhook() {
				<-done // started (or finished): wait for it
			}
		})
	}
}
