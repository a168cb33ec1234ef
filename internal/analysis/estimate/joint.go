package estimate

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/analysis/bytesize"
)

// The swarm's claims together (docs/estimation.md, "Claims that fit
// together"). Each identity's plausible bound lets it take everything the
// others absorbed while it could send; a swarm whose uploaders all claim
// that much claims more than was absorbed. Joint puts every claim of the
// swarm into one flow network over the sliced window: a claim flows from
// its announce pair into its uploader's slices (at most the uploader's
// capacity there), from there into the receivers' slices (only pieces the
// uploader may have held before the receiver had them), and from the
// receivers to the sink (what each may have gained, within its own
// reported downloads). What cannot flow is claimed and absorbed by nobody.

// ClaimSet is one identity's reported uploads, for Joint: observed peer
// Peer, else unobserved identity Unobserved (both −1: an identity the
// estimator does not know, which may have sent to anyone). Tolerance is
// forgiven once over all its intervals, like the slack and burst
// allowance of a single check.
type ClaimSet struct {
	Peer       int
	Unobserved int
	Tolerance  int64
	Intervals  []ClaimInterval
}

// ClaimInterval is a reported upload over one announce pair.
type ClaimInterval struct {
	From, To time.Time
	Bytes    int64
}

// JointConfig scales the two sides of the network, as the sliced bound's
// threshold does (Config.Sliced*Factor), and widens every interval by
// Widen on each side, so a byte counted at an announce may have moved in
// the slice next to it.
type JointConfig struct {
	CapacityFactor     float64
	AvailabilityFactor float64
	Widen              time.Duration
	// NotUnobserved are the unobserved identities (by index) whose
	// absorption is left out.
	NotUnobserved map[int]bool
}

// MaxJointEdges caps the network of Joint; larger swarms get ErrJointTooLarge.
const MaxJointEdges = 1 << 16

// ErrJointTooLarge: the swarm is too large for the joint check.
var ErrJointTooLarge = errors.New("swarm too large for the joint claims check")

// Joint is the flow network of a swarm's claims; Unmet asks it with one
// claim set left out. It is not safe for concurrent use.
type Joint struct {
	nodes  int
	edges  []jointEdge
	owners []int // per edge: the claim set whose source edge it is, or -1
	claims []int64
}

type jointEdge struct {
	u, v int
	c    int64
}

// Joint builds the network of the claim sets over [from, to).
func (e *Estimator) Joint(from, to time.Time, sets []ClaimSet, cfg JointConfig) (*Joint, error) {
	w, _, err := e.window(from, to)
	if err != nil {
		return nil, err
	}
	for k, s := range sets {
		if s.Peer >= len(e.peers) || s.Unobserved >= len(e.unobs) {
			return nil, fmt.Errorf("%w: claim set %d: peer %d, unobserved %d", ErrNoPeer, k, s.Peer, s.Unobserved)
		}
	}
	sw := e.slices(w)
	m := len(sw)
	receivers := 0
	for q := range e.peers {
		if e.peers[q].info {
			receivers++
		}
	}
	receivers += len(e.unobs)
	if size := len(sets) * m * (receivers + 3); size > MaxJointEdges {
		return nil, fmt.Errorf("%w: %d claim sets, %d slices, %d receivers", ErrJointTooLarge, len(sets), m, receivers)
	}
	cf, af := factorOr1(cfg.CapacityFactor), factorOr1(cfg.AvailabilityFactor)
	jt := &Joint{nodes: 2, claims: make([]int64, len(sets))}
	node := func() int { jt.nodes++; return jt.nodes - 1 }
	edge := func(u, v int, c int64, owner int) {
		if c > 0 {
			jt.edges = append(jt.edges, jointEdge{u, v, c})
			jt.owners = append(jt.owners, owner)
		}
	}
	meets := func(a, b int64, s window) bool { return a < s.ut && b >= s.uf }

	// The receivers: each observed peer with pieces, entered slice by
	// slice (at most what it may have gained there), then through its
	// reported spans, then its total in the window; each unobserved
	// identity likewise with its allowance.
	obsIn := make([][]int, len(e.peers))   // [q][s]: the entry node
	unobsIn := make([][]int, len(e.unobs)) // [u][s]
	spansFrom := func(rep *repData, outs []int, total int) {
		for r, span := range rep.spans {
			if rep.bytes[r] <= 0 || !meets(span[0], span[1], w) {
				continue
			}
			rn := node()
			edge(rn, total, scale(rep.bytes[r], af), -1)
			for s := range sw {
				if outs[s] >= 0 && meets(span[0], span[1], sw[s]) {
					edge(outs[s], rn, flowInf, -1)
				}
			}
		}
	}
	for q := range e.peers {
		pd := &e.peers[q]
		if !pd.info {
			continue
		}
		g := e.gains(pd, w)
		if g <= 0 {
			continue
		}
		qn := node()
		edge(qn, flowSink, scale(g, af), -1)
		obsIn[q] = make([]int, m)
		outs := make([]int, m)
		for s := range sw {
			obsIn[q][s], outs[s] = -1, -1
			gs := scale(e.gains(pd, sw[s]), af)
			if gs <= 0 {
				continue
			}
			obsIn[q][s], outs[s] = node(), node()
			edge(obsIn[q][s], outs[s], gs, -1)
			if pd.rep == nil {
				edge(outs[s], qn, flowInf, -1)
			}
		}
		if pd.rep != nil {
			spansFrom(pd.rep, outs, qn)
		}
	}
	for k, u := range e.unobs {
		if cfg.NotUnobserved[k] {
			continue
		}
		un := node()
		edge(un, flowSink, scale(u.maxGain, af), -1)
		unobsIn[k] = make([]int, m)
		for s := range sw {
			unobsIn[k][s] = node()
			if u.rep == nil {
				edge(unobsIn[k][s], un, scale(e.unobsAllowance(u, sw[s], math.MaxInt64), af), -1)
			}
		}
		if u.rep != nil {
			spansFrom(u.rep, unobsIn[k], un)
		}
	}

	// The uploaders: each claim interval into the uploader's slices it
	// meets (widened), each slice at most its capacity there, out to the
	// receivers other than itself and to the auditor's probes.
	widen := int64(cfg.Widen)
	pairwise := e.nInfo <= heldFilterPeers
	perSlice := make([]int64, m)
	for k, set := range sets {
		var total int64
		for _, iv := range set.Intervals {
			total = bytesize.Add(total, max(iv.Bytes, 0))
		}
		jt.claims[k] = total
		if total <= 0 {
			continue
		}
		tol := node()
		edge(tol, flowSink, max(set.Tolerance, 0), -1)
		var pcap *peerData
		if set.Peer >= 0 && e.peers[set.Peer].pcap.Known {
			pcap = &e.peers[set.Peer]
		}
		outs := make([]int, m)
		ins := make([]int, m)
		for s := range sw {
			ins[s], outs[s] = node(), node()
			if pcap == nil {
				edge(ins[s], outs[s], flowInf, -1)
				continue
			}
			capB, probes := e.sliceCapacity(set.Peer, sw[s])
			edge(ins[s], outs[s], scale(capB, cf), -1)
			edge(outs[s], flowSink, scale(probes, af), -1)
		}
		for _, iv := range set.Intervals {
			if iv.Bytes <= 0 {
				continue
			}
			iw, _, err := e.window(iv.From, iv.To)
			if err != nil {
				return nil, err
			}
			pn := node()
			edge(flowSource, pn, iv.Bytes, k)
			edge(pn, tol, flowInf, -1)
			for s := range sw {
				if meets(bytesize.Add(iw.uf, -widen), bytesize.Add(iw.ut, widen), sw[s]) {
					edge(pn, ins[s], flowInf, -1)
				}
			}
		}
		held := set.Peer >= 0 && pairwise && e.peers[set.Peer].info
		for q := range e.peers {
			if q == set.Peer || obsIn[q] == nil {
				continue
			}
			if held {
				e.heldGains(set.Peer, q, w, sw, perSlice)
			}
			for s := range sw {
				if obsIn[q][s] < 0 {
					continue
				}
				c := int64(flowInf)
				if held {
					c = scale(perSlice[s], af)
				}
				edge(outs[s], obsIn[q][s], c, -1)
			}
		}
		for u := range e.unobs {
			if (u == set.Unobserved && set.Peer < 0) || unobsIn[u] == nil {
				continue
			}
			for s := range sw {
				edge(outs[s], unobsIn[u][s], flowInf, -1)
			}
		}
	}
	return jt, nil
}

// Unmet is what the claims (all but claim set without's; −1 for none)
// cannot pass to anyone, beyond their tolerances: 0 when they fit
// together.
func (jt *Joint) Unmet(without int) int64 {
	f := newFlowNet(jt.nodes, len(jt.edges))
	defer f.release()
	var want int64
	for k, ed := range jt.edges {
		if o := jt.owners[k]; o >= 0 {
			if o == without {
				continue
			}
			want = bytesize.Add(want, ed.c)
		}
		f.edge(ed.u, ed.v, ed.c)
	}
	return max(0, want-f.max())
}

// Claimed is the total claim set k asked the network to pass.
func (jt *Joint) Claimed(k int) int64 { return jt.claims[k] }
