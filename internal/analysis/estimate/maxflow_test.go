package estimate

import (
	"math/rand/v2"
	"testing"
)

// TestMaxFlowBruteForce: on random small networks, Dinic's maximum flow
// equals the minimum cut found by trying every set of nodes on the
// source's side.
func TestMaxFlowBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 500 {
		n := 2 + r.IntN(7)
		type e struct {
			u, v int
			c    int64
		}
		var es []e
		for range r.IntN(3 * n) {
			u, v := r.IntN(n), r.IntN(n)
			if u == v {
				continue
			}
			c := int64(r.IntN(20))
			if r.IntN(8) == 0 {
				c = flowInf
			}
			es = append(es, e{u, v, c})
		}
		f := newFlowNet(n, len(es))
		for _, x := range es {
			f.edge(x.u, x.v, x.c)
		}
		got := f.max()
		best := int64(flowInf)
		for set := 0; set < 1<<n; set++ {
			if set&(1<<flowSource) == 0 || set&(1<<flowSink) != 0 {
				continue
			}
			var cut int64
			for _, x := range es {
				if set&(1<<x.u) != 0 && set&(1<<x.v) == 0 && x.c > 0 {
					cut = min(cut+x.c, flowInf)
				}
			}
			best = min(best, cut)
		}
		if got != best {
			t.Fatalf("iter %d: %d nodes %v: max flow %d, min cut %d", iter, n, es, got, best)
		}
	}
}
