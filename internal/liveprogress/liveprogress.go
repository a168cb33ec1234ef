// Package liveprogress shows an audit's progress while it runs: on a
// terminal, a display that redraws in place (drawn by
// github.com/vbauerster/mpb); elsewhere (a log file, CI), one plain line
// every LogEvery.
package liveprogress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/mattn/go-isatty"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/swarmaudit/swarmaudit/internal/observation/collect"
)

// LogEvery is how often the plain-line fallback writes.
const LogEvery = 10 * time.Second

// Display shows progress updates. Update and Close are safe from any
// goroutine.
type Display struct {
	w     io.Writer
	total time.Duration

	mu     sync.Mutex
	last   collect.Progress
	left   time.Duration
	logged time.Time
	closed bool
	bars   *mpb.Progress
	bar    *mpb.Bar
}

// New returns a display for an audit of total duration writing to w; it
// redraws in place when w is a terminal.
func New(w io.Writer, total time.Duration) *Display {
	d := &Display{w: w, total: total, left: total}
	if f, ok := w.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		d.bars = mpb.New(mpb.WithOutput(w), mpb.WithWidth(30), mpb.WithRefreshRate(250*time.Millisecond))
		d.bar = d.bars.New(max(int64(total/time.Second), 1), mpb.BarStyle(),
			mpb.PrependDecorators(decor.Name("audit "), decor.Any(func(decor.Statistics) string { return d.counts() })),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return d.remaining() })),
		)
	}
	return d
}

// Update records the latest counts.
func (d *Display) Update(p collect.Progress, left time.Duration) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.last, d.left = p, left
	bar := d.bar
	var line string
	if bar == nil && time.Since(d.logged) >= LogEvery {
		d.logged = time.Now()
		line = fmt.Sprintf("audit: %s; %s\n", d.countsLocked(), d.remainingLocked())
	}
	d.mu.Unlock()
	// The bar's decorators take d.mu from mpb's goroutine: never call into
	// mpb while holding it.
	if bar != nil {
		bar.SetCurrent(int64((d.total - left) / time.Second))
	} else if line != "" {
		io.WriteString(d.w, line)
	}
}

// Close finishes the display (the terminal keeps its last frame).
func (d *Display) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	bar, bars := d.bar, d.bars
	d.mu.Unlock()
	if bar != nil {
		bar.SetCurrent(max(int64(d.total/time.Second), 1))
		bars.Wait()
	}
}

func (d *Display) counts() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.countsLocked()
}

func (d *Display) countsLocked() string {
	p := d.last
	return fmt.Sprintf("%d peers discovered, %d reached, %d watched, %d probed, %d failing; auditor moved %s in / %s out",
		p.Discovered, p.Reached, p.Watching, p.Probed, p.Failed,
		humanize.IBytes(uint64(p.BytesIn)), humanize.IBytes(uint64(p.BytesOut)))
}

func (d *Display) remaining() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remainingLocked()
}

func (d *Display) remainingLocked() string {
	return d.left.Round(time.Second).String() + " left"
}
