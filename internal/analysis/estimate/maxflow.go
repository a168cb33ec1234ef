package estimate

import (
	"math"
	"sync"
)

// flowNet is a small flow network for the sliced bound (Plausible.SlicedBound):
// Dinic's algorithm, int64 capacities. A node is an index; 0 and 1 are the
// source and the sink.
type flowNet struct {
	head []int32 // per node: its first edge, or -1
	to   []int32 // per edge: its head; edge e^1 is its reverse
	next []int32 // per edge: the next edge of its tail
	cap  []int64 // per edge: residual capacity
	// max's work space, kept for the next network drawn from the pool
	level, iter, queue []int32
}

// flowNets keeps networks between bounds: an estimator computes one per
// sliced bound, and concurrent callers each draw their own.
var flowNets = sync.Pool{New: func() any { return new(flowNet) }}

const (
	flowSource = 0
	flowSink   = 1
	flowInf    = math.MaxInt64 / 4
)

// newFlowNet draws a network of nodes nodes, with room for edges edges,
// from the pool; release returns it.
func newFlowNet(nodes, edges int) *flowNet {
	f := flowNets.Get().(*flowNet)
	f.head = grow(f.head[:0], nodes+edges/2)[:nodes]
	for i := range f.head {
		f.head[i] = -1
	}
	f.to, f.next = grow(f.to[:0], 2*edges), grow(f.next[:0], 2*edges)
	f.cap = grow(f.cap[:0], 2*edges)
	return f
}

// release returns f to the pool; f is not used after.
func (f *flowNet) release() { flowNets.Put(f) }

// grow returns s (empty) with room for n elements.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, 0, n)
	}
	return s[:0]
}

// node adds a node and returns it.
func (f *flowNet) node() int {
	f.head = append(f.head, -1)
	return len(f.head) - 1
}

// edge adds an edge u→v of capacity c (nothing when c <= 0).
func (f *flowNet) edge(u, v int, c int64) {
	if c <= 0 {
		return
	}
	for _, e := range [2]struct {
		from, to int
		c        int64
	}{{u, v, c}, {v, u, 0}} {
		f.to = append(f.to, int32(e.to))
		f.cap = append(f.cap, e.c)
		f.next = append(f.next, f.head[e.from])
		f.head[e.from] = int32(len(f.to) - 1)
	}
}

// max returns the maximum flow from the source to the sink, saturating at
// flowInf.
func (f *flowNet) max() int64 {
	n := len(f.head)
	f.level, f.iter, f.queue = grow(f.level, n)[:n], grow(f.iter, n)[:n], grow(f.queue, n)
	level, iter, queue := f.level, f.iter, f.queue
	var total int64
	for {
		for i := range level {
			level[i] = -1
		}
		level[flowSource] = 0
		queue = append(queue[:0], flowSource)
		for h := 0; h < len(queue); h++ {
			u := queue[h]
			for e := f.head[u]; e >= 0; e = f.next[e] {
				if v := f.to[e]; f.cap[e] > 0 && level[v] < 0 {
					level[v] = level[u] + 1
					queue = append(queue, v)
				}
			}
		}
		if level[flowSink] < 0 {
			return total
		}
		copy(iter, f.head)
		for {
			pushed := f.push(flowSource, flowInf, level, iter)
			if pushed == 0 {
				break
			}
			total += pushed
			if total >= flowInf {
				return flowInf
			}
		}
	}
}

// push sends up to limit along level-increasing paths from u (Dinic's
// blocking flow, depth-first with the current-edge pointers iter).
func (f *flowNet) push(u int32, limit int64, level, iter []int32) int64 {
	if u == flowSink {
		return limit
	}
	for ; iter[u] >= 0; iter[u] = f.next[iter[u]] {
		e := iter[u]
		v := f.to[e]
		if f.cap[e] <= 0 || level[v] != level[u]+1 {
			continue
		}
		if d := f.push(v, min(limit, f.cap[e]), level, iter); d > 0 {
			f.cap[e] -= d
			f.cap[e^1] += d
			return d
		}
	}
	return 0
}
