package estimate

import (
	"math"
	"testing"
	"time"
)

func TestDemandBusy(t *testing.T) {
	none := [2]int64{posInf, posInf}
	tests := []struct {
		name  string
		spans [][2]int64
		x, y  int64
		own   [2]int64
		want  float64
	}{
		{name: "empty", x: 0, y: 100, own: none, want: 0},
		{name: "one span inside", spans: [][2]int64{{10, 30}}, x: 0, y: 100, own: none, want: 20},
		{name: "clipped by the window", spans: [][2]int64{{10, 30}}, x: 20, y: 25, own: none, want: 5},
		{name: "overlap counted once", spans: [][2]int64{{10, 30}, {20, 50}}, x: 0, y: 100, own: none, want: 40},
		{name: "own span alone is no demand", spans: [][2]int64{{10, 30}}, x: 0, y: 100, own: [2]int64{10, 30}, want: 0},
		{name: "own span with another", spans: [][2]int64{{10, 30}, {20, 50}}, x: 0, y: 100, own: [2]int64{10, 30}, want: 30},
		{name: "identical spans, one own", spans: [][2]int64{{10, 30}, {10, 30}}, x: 0, y: 100, own: [2]int64{10, 30}, want: 20},
		{name: "unbounded span", spans: [][2]int64{{negInf, 30}, {40, posInf}}, x: 0, y: 100, own: none, want: 90},
		{name: "empty window", spans: [][2]int64{{10, 30}}, x: 50, y: 50, own: none, want: 0},
		{name: "degenerate spans ignored", spans: [][2]int64{{30, 10}, {5, 5}}, x: 0, y: 100, own: none, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDemand(tc.spans)
			if got := d.busy(tc.x, tc.y, [][2]int64{tc.own}); math.Abs(got-tc.want) > 1e-6*max(1, tc.want) {
				t.Errorf("busy(%d, %d) = %v, want %v", tc.x, tc.y, got, tc.want)
			}
		})
	}
}

// TestStalledLeecherIsNoDemand: a peer that never completed a piece while
// observed (C lacks everything at 450, so with a 10 min tail it "may gain"
// until 1050) is no demand for the capacity bound, and no competitor of a
// probe; the availability bound still counts what it may have gained.
func TestStalledLeecherIsNoDemand(t *testing.T) {
	all := swarm()
	ps := []Peer{all[0], all[1], all[3]} // S, L1 (done by 300), C
	ps[0].Capacity = Capacity{Samples: []Sample{{At: at(350), BytesPerSec: 2}}}
	cfg := exact()
	cfg.UnresolvedTail = 10 * time.Minute
	e := mustNew(t, Input{Torrent: tor10, Peers: ps}, cfg)
	b := mustPeer(t, e, 0, 400, 900)
	x := b.Explain
	if x.DemandTime != 0 || x.CapacityBound != 0 || !x.Capacity.Quiet {
		t.Errorf("demand %v, capacity bound %d, quiet %v; want 0, 0, true", x.DemandTime, x.CapacityBound, x.Capacity.Quiet)
	}
	if x.AvailabilityBound == 0 {
		t.Error("availability must still allow the stalled leecher's possible gains")
	}
}
