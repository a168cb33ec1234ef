package store

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

func bfOf(n int, pieces ...int) bitfield.Bitfield {
	bf := bitfield.New(n)
	for _, p := range pieces {
		bf.Set(p)
	}
	return bf
}

func TestEncodeRuns(t *testing.T) {
	tests := []struct {
		name string
		set  bitfield.Bitfield
		base bitfield.Bitfield
		want []byte
	}{
		{"empty", bfOf(10), bitfield.Bitfield{}, []byte{}},
		{"one piece", bfOf(10, 3), bitfield.Bitfield{}, []byte{3, 0}},
		{"one run", bfOf(10, 2, 3, 4), bitfield.Bitfield{}, []byte{2, 2}},
		{"two runs", bfOf(10, 0, 1, 5), bitfield.Bitfield{}, []byte{0, 1, 2, 0}},
		{"adjacent runs gap of one", bfOf(10, 0, 2), bitfield.Bitfield{}, []byte{0, 0, 0, 0}},
		{"full", bitfield.Full(1000), bitfield.Bitfield{}, []byte{0, 0xe7, 0x07}},
		{"delta skips base", bfOf(10, 1, 2, 3), bfOf(10, 2), []byte{1, 0, 0, 0}},
		{"delta equal", bfOf(10, 1), bfOf(10, 1), []byte{}},
		{"large index", bfOf(300, 299), bitfield.Bitfield{}, []byte{0xab, 0x02, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := encodeRuns(nil, tt.set, tt.base)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("encodeRuns = %x, want %x", got, tt.want)
			}
			base := tt.base
			if base.Len() == 0 {
				base = bitfield.New(tt.set.Len())
			}
			bf := base.Clone()
			if err := applyRuns(bf, got); err != nil {
				t.Fatalf("applyRuns: %v", err)
			}
			if !bf.Equal(tt.set) {
				t.Fatalf("decoded %v, want %v", bf.Indices(), tt.set.Indices())
			}
		})
	}
}

func TestApplyRunsRejects(t *testing.T) {
	tests := []struct {
		name string
		n    int
		base []int
		data []byte
	}{
		{"truncated pair", 10, nil, []byte{3}},
		{"truncated varint", 10, nil, []byte{0x80}},
		{"start past end", 10, nil, []byte{10, 0}},
		{"run past end", 10, nil, []byte{8, 2}},
		{"non-minimal varint", 10, nil, []byte{0x83, 0x00, 0}},
		{"varint too long", 10, nil, []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0}},
		{"second run past end", 10, nil, []byte{0, 0, 8, 0}},
		{"piece already in base", 10, []int{4}, []byte{4, 0}},
		{"huge varint", 10, nil, []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0}},
		{"any piece of empty torrent", 0, nil, []byte{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := applyRuns(bfOf(tt.n, tt.base...), tt.data)
			if !errors.Is(err, ErrCorruptDelta) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("applyRuns(%x) = %v, want ErrCorruptDelta", tt.data, err)
			}
		})
	}
}

func TestRunsRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 2000; iter++ {
		n := rng.IntN(3000)
		base, set := bitfield.New(n), bitfield.New(n)
		density := rng.Float64()
		for i := 0; i < n; i++ {
			if rng.Float64() < density {
				set.Set(i)
				if rng.IntN(2) == 0 {
					base.Set(i)
				}
			}
		}
		enc := encodeRuns(nil, set, base)
		got := base.Clone()
		if err := applyRuns(got, enc); err != nil {
			t.Fatalf("n=%d: applyRuns: %v", n, err)
		}
		if !got.Equal(set) {
			t.Fatalf("n=%d: round trip differs", n)
		}
	}
}

// FuzzDecodeDelta feeds arbitrary bytes to the snapshot delta decoder: it
// must never panic, and whatever it accepts must re-encode to the same bytes
// (the encoding is canonical), touching only pieces absent from the base.
func FuzzDecodeDelta(f *testing.F) {
	f.Add([]byte{}, uint32(10), []byte{})
	f.Add([]byte{3, 0}, uint32(10), []byte{})
	f.Add([]byte{0, 1, 2, 0}, uint32(10), []byte{0x20, 0})
	f.Add([]byte{0, 0xe7, 0x07}, uint32(1000), []byte{})
	f.Add([]byte{0x83, 0x00, 0}, uint32(10), []byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0}, uint32(1<<20), []byte{0xff})
	f.Fuzz(func(t *testing.T, data []byte, n uint32, baseBytes []byte) {
		pieces := int(n % (1 << 16))
		base := bitfield.New(pieces)
		for i, b := range baseBytes {
			for j := 0; j < 8; j++ {
				if b&(0x80>>j) != 0 {
					base.Set(i*8 + j)
				}
			}
		}
		got := base.Clone()
		if err := applyRuns(got, data); err != nil {
			if !errors.Is(err, ErrCorruptDelta) {
				t.Fatalf("error %v is not ErrCorruptDelta", err)
			}
			return
		}
		if len(base.Gained(got)) != 0 {
			t.Fatalf("decoding cleared pieces of the base")
		}
		if re := encodeRuns(nil, got, base); !bytes.Equal(re, data) {
			t.Fatalf("accepted %x but it re-encodes as %x", data, re)
		}
	})
}

// FuzzDecodeMissing: the missing-piece encoding of a delta decodes to a
// superset of its base, or fails with ErrCorruptDelta; what it accepts
// re-encodes to the same bytes.
func FuzzDecodeMissing(f *testing.F) {
	f.Add([]byte{}, uint32(10), []byte{0xff, 0xc0})
	f.Add([]byte{0x80, 0x40}, uint32(10), []byte{})
	f.Add([]byte{0x01}, uint32(12), []byte{0xf0})
	f.Fuzz(func(t *testing.T, data []byte, n uint32, baseBytes []byte) {
		pieces := int(n % (1 << 16))
		base := bitfield.New(pieces)
		for i, b := range baseBytes {
			for j := 0; j < 8 && i*8+j < pieces; j++ {
				if b&(0x80>>j) != 0 {
					base.Set(i*8 + j)
				}
			}
		}
		got := base.Clone()
		if err := applyMissing(got, base, data); err != nil {
			if !errors.Is(err, ErrCorruptDelta) {
				t.Fatalf("error %v is not ErrCorruptDelta", err)
			}
			return
		}
		if len(base.Gained(got)) != 0 {
			t.Fatalf("decoding cleared pieces of the base")
		}
		if re := encodeMissing(got, base); !bytes.Equal(re, data) {
			t.Fatalf("accepted %x but it re-encodes as %x", data, re)
		}
	})
}
