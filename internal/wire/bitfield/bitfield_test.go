package bitfield

import (
	"errors"
	"reflect"
	"testing"
)

func TestFromWire(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		n       int
		want    []int
		wantErr error
	}{
		{"empty torrent", nil, 0, nil, nil},
		{"exact byte", []byte{0xa0}, 8, []int{0, 2}, nil},
		{"spare bits clear", []byte{0xff, 0x80}, 9, []int{0, 1, 2, 3, 4, 5, 6, 7, 8}, nil},
		{"spare bit set", []byte{0xff, 0xc0}, 9, nil, ErrSpareBits},
		{"too short", []byte{0xff}, 9, nil, ErrLength},
		{"too long", []byte{0xff, 0, 0}, 9, nil, ErrLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bf, err := FromWire(tt.payload, tt.n)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := bf.Indices(); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("indices = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFromBools(t *testing.T) {
	v := make([]bool, 16)
	v[0], v[9] = true, true
	bf, err := FromBools(v, 10)
	if err != nil || !reflect.DeepEqual(bf.Indices(), []int{0, 9}) {
		t.Fatalf("got %v, %v", bf.Indices(), err)
	}
	v[12] = true
	if _, err := FromBools(v, 10); !errors.Is(err, ErrSpareBits) {
		t.Fatalf("spare bit: err = %v", err)
	}
	if _, err := FromBools(v[:8], 10); !errors.Is(err, ErrLength) {
		t.Fatalf("short: err = %v", err)
	}
}

func TestSetOps(t *testing.T) {
	a := New(10)
	if a.Set(10) || a.Set(-1) || a.Has(11) {
		t.Fatal("out of range accepted")
	}
	a.Set(1)
	a.Set(9)
	b := a.Clone()
	b.Set(3)
	if got := b.Gained(a); !reflect.DeepEqual(got, []int{3}) {
		t.Fatalf("gained = %v", got)
	}
	if a.Has(3) {
		t.Fatal("clone shares storage")
	}
	a.Union(b)
	if !a.Equal(b) || a.Count() != 3 {
		t.Fatalf("union: %v", a.Indices())
	}
	a.Clear(3)
	if a.Has(3) || a.Count() != 2 {
		t.Fatal("clear")
	}
	f := Full(10)
	if !f.Complete() || f.Count() != 10 || f.Bytes()[1] != 0xc0 {
		t.Fatalf("full: %x", f.Bytes())
	}
}
