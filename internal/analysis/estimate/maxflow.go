package estimate

import "math"

// flowNet is a small flow network for the sliced bound (Plausible.SlicedBound):
// Dinic's algorithm, int64 capacities. A node is an index; 0 and 1 are the
// source and the sink.
type flowNet struct {
	head []int32 // per node: its first edge, or -1
	to   []int32 // per edge: its head; edge e^1 is its reverse
	next []int32 // per edge: the next edge of its tail
	cap  []int64 // per edge: residual capacity
}

const (
	flowSource = 0
	flowSink   = 1
	flowInf    = math.MaxInt64 / 4
)

// newFlowNet makes a network of nodes nodes with room for edges edges.
func newFlowNet(nodes, edges int) *flowNet {
	f := &flowNet{head: make([]int32, nodes, nodes+edges/2), to: make([]int32, 0, 2*edges),
		next: make([]int32, 0, 2*edges), cap: make([]int64, 0, 2*edges)}
	for i := range f.head {
		f.head[i] = -1
	}
	return f
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
	level := make([]int32, n)
	iter := make([]int32, n)
	queue := make([]int32, 0, n)
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
