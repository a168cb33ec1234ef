package store

import (
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestHaveBatchRoundTrip: a packed batch reads back as its events sorted,
// each once, to 10 ms (rounded down from the batch's first time).
func TestHaveBatchRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	random := func(n, peers, pieces int, spanUS int64) []haveEvent {
		evs := make([]haveEvent, n)
		for i := range evs {
			evs[i] = haveEvent{peer: 1 + rng.Int64N(int64(peers)), atUS: t0US + rng.Int64N(spanUS), piece: rng.IntN(pieces)}
		}
		return evs
	}
	tests := []struct {
		name string
		evs  []haveEvent
	}{
		{"one", []haveEvent{{peer: 7, atUS: t0US, piece: 0}}},
		{"duplicates", []haveEvent{{7, t0US + 5, 3}, {7, t0US + 5, 3}, {2, t0US, 1}}},
		{"one peer, many", random(500, 1, 2000, 1e6)},
		{"a swarm's second", random(100, 1000, 2000, 1e6)},
		{"huge ids, pieces and span", []haveEvent{{1 << 40, t0US, 1<<31 - 1}, {1<<40 + 1, t0US + 86400e6*30, 0}, {3, t0US + 999, 5}}},
		{"random", random(2000, 50000, 1<<20, 3600e6)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := tt.evs[0].atUS
			for _, e := range tt.evs {
				base = min(base, e.atUS)
			}
			data, n := encodeHaveBatch(tt.evs, base)
			got, err := decodeHaveBatch(data, base)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]haveEvent, len(tt.evs))
			for i, e := range tt.evs {
				want[i] = haveEvent{e.peer, base + (e.atUS-base)/haveTimeUnitUS*haveTimeUnitUS, e.piece}
			}
			slices.SortFunc(want, compareHaves)
			want = slices.Compact(want)
			if !slices.Equal(got, want) || n != len(got) {
				t.Fatalf("%d events (said %d), want %d; first got %v want %v", len(got), n, len(want), got[:min(3, len(got))], want[:min(3, len(want))])
			}
			t.Logf("%d events in %d bytes: %.2f B/event", n, len(data), float64(len(data))/float64(n))
		})
	}
}

// TestHaveBatchVersion1: batches written with millisecond times (before
// the unit was stored) still read back.
func TestHaveBatchVersion1(t *testing.T) {
	// peer 7 then 9; 0 and 1 ms; pieces 3 and 4: first−1 = 6, 2 events,
	// wTime 1, wPiece 3, then gamma(2) 0 011 and gamma(3) 1 100.
	data := []byte{1, 6, 2, 1, 3, 0b01000110, 0b11110000}
	got, err := decodeHaveBatch(data, t0US)
	want := []haveEvent{{7, t0US, 3}, {9, t0US + 1000, 4}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
}

// TestHaveBatchVersion2: batches written with plain Elias-gamma peer
// deltas and no order in the header still read back.
func TestHaveBatchVersion2(t *testing.T) {
	// peer 7 then 9; 0 and 10 ms; pieces 3 and 4: first−1 = 6, 2 events,
	// wTime 1, wPiece 3, unit 10,000 µs, then gamma(2) 0 011 and gamma(3) 1 100.
	data := []byte{2, 6, 2, 1, 3, 0x90, 0x4e, 0b01000110, 0b11110000}
	got, err := decodeHaveBatch(data, t0US)
	want := []haveEvent{{7, t0US, 3}, {9, t0US + 10000, 4}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
}

// TestHaveBatchPeerOrder: the writer picks the order that suits the gaps
// between a batch's peers (0 for one peer, about log2 of the gap for a
// sample of a swarm), and the batch is shorter for it than with order 0.
func TestHaveBatchPeerOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	one := make([]haveEvent, 50)
	for i := range one {
		one[i] = haveEvent{peer: 9, atUS: t0US + int64(i)*20000, piece: i}
	}
	sample := make([]haveEvent, 100)
	for i := range sample {
		sample[i] = haveEvent{peer: 1 + rng.Int64N(1000), atUS: t0US + rng.Int64N(1e6), piece: rng.IntN(2000)}
	}
	slices.SortFunc(sample, compareHaves)
	for _, tt := range []struct {
		name   string
		evs    []haveEvent
		lo, hi int
	}{{"one peer", one, 0, 0}, {"100 of 1,000 peers", sample, 2, 4}} {
		k := peerOrder(tt.evs)
		if k < tt.lo || k > tt.hi {
			t.Errorf("%s: order %d, want %d to %d", tt.name, k, tt.lo, tt.hi)
		}
		gammaBits, orderBits := 0, 0
		prev := tt.evs[0].peer - 1
		for _, e := range tt.evs {
			d := uint64(e.peer - prev)
			gammaBits += 2*bits.Len64(d+1) - 1
			orderBits += 2*bits.Len64(d>>k+1) - 1 + k
			prev = e.peer
		}
		if orderBits > gammaBits || (k > 0 && orderBits == gammaBits) {
			t.Errorf("%s: order %d takes %d bits for the peers, order 0 %d", tt.name, k, orderBits, gammaBits)
		}
		data, _ := encodeHaveBatch(tt.evs, t0US)
		got, err := decodeHaveBatch(data, t0US)
		if err != nil || len(got) != len(tt.evs) {
			t.Fatalf("%s: %d events back: %v", tt.name, len(got), err)
		}
		t.Logf("%s: order %d, %d bytes; peer deltas in %d bits, %d at order 0", tt.name, k, len(data), orderBits, gammaBits)
	}
}

// t0US is t0 in microseconds.
var t0US = t0.UnixMicro()

// FuzzDecodeHaveBatch: a stored batch is read back with a clear error or
// events, never a panic or an allocation the data cannot back.
func FuzzDecodeHaveBatch(f *testing.F) {
	data, _ := encodeHaveBatch([]haveEvent{{7, t0US, 3}, {9, t0US + 1500, 4}}, t0US)
	f.Add(data)
	f.Add([]byte{1, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0})
	f.Add([]byte{1, 0, 1, 40, 31})
	f.Add([]byte{2, 0, 1, 40, 31, 0})
	f.Add([]byte{3, 0, 1, 40, 31, 0x90, 0x4e, 40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{3})
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := decodeHaveBatch(data, t0US)
		if err != nil {
			return
		}
		if len(evs) == 0 || len(evs) > len(data)*8 {
			t.Fatalf("%d events from %d bytes", len(evs), len(data))
		}
		for _, e := range evs {
			if e.peer < 0 || e.atUS < t0US || e.piece < 0 {
				t.Fatalf("event out of range: %+v", e)
			}
		}
	})
}

// TestProbeRecordRoundTrip: a probe record reads back as written, and a
// damaged one is an error.
func TestProbeRecordRoundTrip(t *testing.T) {
	for _, rec := range []string{`{}`, `{"outcome":"ok","choked":false,"failed_pieces":[3,9]}`, `{"error":"` + strings.Repeat("x", 5000) + `"}`} {
		z := deflateProbe([]byte(rec))
		got, err := inflateProbe(z)
		if err != nil || string(got) != rec {
			t.Fatalf("%q: got %q, %v", rec, got, err)
		}
	}
	if _, err := inflateProbe([]byte{probeDictVersion, 0xff, 0x00}); err == nil {
		t.Fatal("a damaged record read back")
	}
}

// FuzzInflateProbe: a stored probe record is read back with an error or at
// most maxJSON bytes, never a panic.
func FuzzInflateProbe(f *testing.F) {
	f.Add(deflateProbe([]byte(`{"outcome":"ok"}`)))
	f.Add([]byte{probeDictVersion})
	f.Add([]byte{2, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := inflateProbe(data)
		if err == nil && len(out) > maxJSON {
			t.Fatalf("%d bytes", len(out))
		}
	})
}
