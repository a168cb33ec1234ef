package peerwire

import (
	"context"
	"sync"
	"testing"
	"time"
)

// deadlineLog records the deadlines set on it, in order.
type deadlineLog struct {
	mu   sync.Mutex
	set  []time.Time
	slow time.Duration // how long each SetDeadline takes
}

func (d *deadlineLog) SetDeadline(t time.Time) error {
	time.Sleep(d.slow)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.set = append(d.set, t)
	return nil
}

func (d *deadlineLog) last() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.set) == 0 {
		return time.Time{}
	}
	return d.set[len(d.set)-1]
}

// TestInterrupt: the end of ctx expires the deadline; a stop that returns
// after the interrupt started waits for it, so the deadline the caller sets
// next is the one that stays; a stop before ctx ends keeps the interrupt
// from ever happening; stop may be called twice.
func TestInterrupt(t *testing.T) {
	t.Run("interrupted, then reset", func(t *testing.T) {
		for range 50 {
			d := &deadlineLog{slow: time.Millisecond}
			ctx, cancel := context.WithCancel(context.Background())
			stop := Interrupt(ctx, d)
			cancel() // the interrupt starts on its own goroutine
			stop()
			// stop returned after the interrupt had finished: its deadline
			// is in, and nothing of it is still to come.
			d.mu.Lock()
			n := len(d.set)
			d.mu.Unlock()
			if n != 1 {
				t.Fatalf("stop returned with %d deadlines set, want the interrupt's", n)
			}
			d.SetDeadline(time.Time{})
			if got := d.last(); !got.IsZero() {
				t.Fatalf("the deadline set after stop was overwritten by %v", got)
			}
			stop()
		}
	})
	t.Run("stopped before the end", func(t *testing.T) {
		d := &deadlineLog{}
		ctx, cancel := context.WithCancel(context.Background())
		stop := Interrupt(ctx, d)
		stop()
		cancel()
		stop()
		if len(d.set) != 0 {
			t.Fatalf("deadlines set after stop: %v", d.set)
		}
	})
}
