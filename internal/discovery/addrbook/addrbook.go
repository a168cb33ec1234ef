// Package addrbook remembers the peer addresses of one swarm and where each
// came from. It deduplicates addresses across sources (trackers, DHT, PEX,
// incoming connections, magnet links), keeps per-source first/last sighting
// times and the PEX flags, refuses addresses no peer can have, is bounded in
// size, and lets readers follow newly found peers in discovery order.
package addrbook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/wire/pex"
)

// Source names. Tracker and PEX sources carry the tracker URL or the
// address of the peer that sent the PEX message; use Tracker and PEX to
// build them.
const (
	SourceDHT      = "dht"
	SourceIncoming = "incoming"
	SourceMagnet   = "magnet"
	SourceLSD      = "lsd" // BEP 14 Local Service Discovery
)

// Tracker returns the source name of a tracker: "tracker:URL".
func Tracker(url string) string { return "tracker:" + url }

// PEX returns the source name of a PEX sender: "pex:ip:port".
func PEX(from netip.AddrPort) string { return "pex:" + from.String() }

// Defaults of Options.
const (
	DefaultCap               = 100_000
	DefaultMaxSourcesPerAddr = 64
)

// ErrInvalidAddr is returned for addresses no peer can have.
var ErrInvalidAddr = errors.New("invalid peer address")

// ErrFull is returned when a new address does not fit in the book.
var ErrFull = errors.New("address book full")

// ErrClosed is returned by Cursor.Next once the book is closed and every
// address has been read.
var ErrClosed = errors.New("address book closed")

// Options configure a Book. The zero value is usable.
type Options struct {
	// Cap is the maximum number of addresses (DefaultCap if <= 0).
	Cap int
	// MaxSourcesPerAddr bounds the distinct sources remembered per address
	// (DefaultMaxSourcesPerAddr if <= 0); further sources are only counted
	// in Entry.OtherSources.
	MaxSourcesPerAddr int
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Sighting is what one source said about an address.
type Sighting struct {
	Source string    `json:"source"`
	First  time.Time `json:"first_seen"`
	Last   time.Time `json:"last_seen"`
	Count  int       `json:"count"`
}

// Entry is a snapshot of one address.
type Entry struct {
	Addr      netip.AddrPort
	FirstSeen time.Time
	// Sightings in the order the sources first reported the address.
	Sightings []Sighting
	// OtherSources counts sources beyond Options.MaxSourcesPerAddr.
	OtherSources int
	// Flags is the union of the PEX flags any sender gave the address.
	Flags pex.Flags
}

// Sources returns the source names in first-seen order.
func (e Entry) Sources() []string {
	out := make([]string, len(e.Sightings))
	for i, s := range e.Sightings {
		out[i] = s.Source
	}
	return out
}

// HasSource reports whether src reported the address.
func (e Entry) HasSource(src string) bool {
	for _, s := range e.Sightings {
		if s.Source == src {
			return true
		}
	}
	return false
}

// MarshalJSON gives the line the discover command prints per peer:
// {"addr","sources","first_seen","flags"}.
func (e Entry) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Addr      string    `json:"addr"`
		Sources   []string  `json:"sources"`
		FirstSeen time.Time `json:"first_seen"`
		Flags     []string  `json:"flags"`
	}{e.Addr.String(), e.Sources(), e.FirstSeen, e.Flags.Names()})
}

type entry struct {
	addr      netip.AddrPort
	first     time.Time
	sightings []Sighting
	other     int
	flags     pex.Flags
}

func (e *entry) snapshot() Entry {
	return Entry{
		Addr:         e.addr,
		FirstSeen:    e.first,
		Sightings:    append([]Sighting(nil), e.sightings...),
		OtherSources: e.other,
		Flags:        e.flags,
	}
}

// Book is a bounded, concurrency-safe set of peer addresses. Addresses are
// never removed, so the order in which they were found is stable and
// cursors can follow it.
type Book struct {
	opts Options

	mu      sync.Mutex
	byAddr  map[netip.AddrPort]*entry
	order   []*entry
	invalid int
	full    int
	closed  bool
	changed chan struct{} // closed and replaced on every new address
}

// New returns an empty book.
func New(opts Options) *Book {
	if opts.Cap <= 0 {
		opts.Cap = DefaultCap
	}
	if opts.MaxSourcesPerAddr <= 0 {
		opts.MaxSourcesPerAddr = DefaultMaxSourcesPerAddr
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Book{opts: opts, byAddr: make(map[netip.AddrPort]*entry), changed: make(chan struct{})}
}

// Normalize returns the canonical form of a peer address (IPv4-mapped IPv6
// unmapped, zone removed) or ErrInvalidAddr if no peer can listen there:
// port 0, the unspecified address, 0.0.0.0/8, multicast, or the IPv4
// limited broadcast address.
func Normalize(a netip.AddrPort) (netip.AddrPort, error) {
	ip := a.Addr().Unmap().WithZone("")
	switch {
	case !ip.IsValid():
		return netip.AddrPort{}, fmt.Errorf("%w: no address", ErrInvalidAddr)
	case a.Port() == 0:
		return netip.AddrPort{}, fmt.Errorf("%w: %s: port 0", ErrInvalidAddr, a)
	case ip.IsUnspecified():
		return netip.AddrPort{}, fmt.Errorf("%w: %s: unspecified", ErrInvalidAddr, a)
	case ip.IsMulticast():
		return netip.AddrPort{}, fmt.Errorf("%w: %s: multicast", ErrInvalidAddr, a)
	case ip.Is4() && ip.As4()[0] == 0:
		return netip.AddrPort{}, fmt.Errorf("%w: %s: in 0.0.0.0/8", ErrInvalidAddr, a)
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.AddrPort{}, fmt.Errorf("%w: %s: broadcast", ErrInvalidAddr, a)
	}
	return netip.AddrPortFrom(ip, a.Port()), nil
}

// Add records that src reported addr with the given PEX flags (0 if the
// source has none). It returns true when the address is new to the book.
// Invalid addresses give ErrInvalidAddr and new addresses beyond the cap
// give ErrFull; both are counted in Stats.
func (b *Book) Add(addr netip.AddrPort, src string, flags pex.Flags) (bool, error) {
	a, err := Normalize(addr)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.invalid++
		return false, err
	}
	now := b.opts.Now()
	e, ok := b.byAddr[a]
	if !ok {
		if len(b.order) >= b.opts.Cap {
			b.full++
			return false, fmt.Errorf("%w: %d addresses", ErrFull, b.opts.Cap)
		}
		e = &entry{addr: a, first: now}
		b.byAddr[a] = e
		b.order = append(b.order, e)
	}
	e.flags |= flags
	found := false
	for i := range e.sightings {
		if s := &e.sightings[i]; s.Source == src {
			s.Last, s.Count, found = now, s.Count+1, true
			break
		}
	}
	if !found {
		if len(e.sightings) < b.opts.MaxSourcesPerAddr {
			e.sightings = append(e.sightings, Sighting{Source: src, First: now, Last: now, Count: 1})
		} else {
			e.other++
		}
	}
	if !ok {
		close(b.changed)
		b.changed = make(chan struct{})
	}
	return !ok, nil
}

// Get returns the entry of addr.
func (b *Book) Get(addr netip.AddrPort) (Entry, bool) {
	a, err := Normalize(addr)
	if err != nil {
		return Entry{}, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.byAddr[a]
	if !ok {
		return Entry{}, false
	}
	return e.snapshot(), true
}

// Len returns the number of addresses.
func (b *Book) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.order)
}

// Entries returns every entry in the order found.
func (b *Book) Entries() []Entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Entry, len(b.order))
	for i, e := range b.order {
		out[i] = e.snapshot()
	}
	return out
}

// Stats summarises the book.
type Stats struct {
	Addrs    int            `json:"addrs"`
	BySource map[string]int `json:"by_source"` // addresses each source reported
	Invalid  int            `json:"invalid"`   // refused as invalid
	Full     int            `json:"full"`      // refused for lack of room
}

// Stats returns counts per source and of refused addresses.
func (b *Book) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := Stats{Addrs: len(b.order), BySource: map[string]int{}, Invalid: b.invalid, Full: b.full}
	for _, e := range b.order {
		for _, s := range e.sightings {
			st.BySource[s.Source]++
		}
	}
	return st
}

// Close marks the book finished: cursors return ErrClosed after the last
// address instead of waiting. Adding after Close still works.
func (b *Book) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.changed)
		b.changed = make(chan struct{})
	}
}

// Cursor follows the addresses of a book in the order they were found.
// A cursor is not safe for concurrent use; make one per reader.
type Cursor struct {
	b    *Book
	next int
}

// Watch returns a cursor at the first address of the book; Next returns
// every address, including those found before Watch was called.
func (b *Book) Watch() *Cursor { return &Cursor{b: b} }

// Next returns the next newly found address, waiting for one if needed. It
// returns ctx's error when ctx ends first, and ErrClosed when the book is
// closed and the cursor has read every address.
func (c *Cursor) Next(ctx context.Context) (Entry, error) {
	for {
		c.b.mu.Lock()
		if c.next < len(c.b.order) {
			e := c.b.order[c.next].snapshot()
			c.next++
			c.b.mu.Unlock()
			return e, nil
		}
		closed, ch := c.b.closed, c.b.changed
		c.b.mu.Unlock()
		if closed {
			return Entry{}, ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Entry{}, ctx.Err()
		}
	}
}

// AddPEX records the added peers of a PEX message received from the peer
// at from, with their flags, and returns how many were new.
func (b *Book) AddPEX(from netip.AddrPort, m pex.Message) int {
	src := PEX(from)
	n := 0
	for _, p := range m.Added {
		if isNew, err := b.Add(p.Addr, src, p.Flags); err == nil && isNew {
			n++
		}
	}
	return n
}

// Copy adds every entry of src to dst, with all its sources and flags, as
// src finds them, until src is closed and read or ctx ends. It lets a book
// outlive one that is closed when its sources stop.
func Copy(ctx context.Context, dst, src *Book) {
	cur := src.Watch()
	for {
		e, err := cur.Next(ctx)
		if err != nil {
			return
		}
		for _, s := range e.Sightings {
			dst.Add(e.Addr, s.Source, e.Flags)
		}
	}
}
