// Package dhttest starts small Mainline DHT networks of
// github.com/anacrolix/dht/v2 nodes on 127.0.0.1 for tests and benchmarks,
// with peers stored at the nodes closest to an info hash, as a real DHT
// would hold announces.
package dhttest

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	alog "github.com/anacrolix/log"
	"github.com/anacrolix/torrent/types/infohash"
	"golang.org/x/time/rate"

	"github.com/swarmaudit/swarmaudit/internal/discovery/dhtsearch"
)

// Network is a set of DHT nodes on 127.0.0.1 that know each other.
type Network struct {
	Nodes  []*dht.Server
	Stores []*dhtsearch.PeerStore
}

// Start starts n nodes on 127.0.0.1, each told about every other (the
// routing tables keep what their buckets hold), and closes them at the end
// of the test.
func Start(tb testing.TB, n int) *Network {
	tb.Helper()
	nw := &Network{}
	quiet := alog.NewLogger("dhttest")
	quiet.SetHandlers(alog.SlogHandlerAsHandler{SlogHandler: slog.DiscardHandler})
	for i := 0; i < n; i++ {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("dht test node %d: %v", i, err)
		}
		store := &dhtsearch.PeerStore{}
		s, err := dht.NewServer(&dht.ServerConfig{
			Conn:             pc,
			NoSecurity:       true,
			PeerStore:        store,
			Logger:           quiet,
			SendLimiter:      rate.NewLimiter(rate.Inf, 1),
			QueryResendDelay: func() time.Duration { return 500 * time.Millisecond },
		})
		if err != nil {
			pc.Close()
			tb.Fatalf("dht test node %d: %v", i, err)
		}
		tb.Cleanup(s.Close)
		nw.Nodes = append(nw.Nodes, s)
		nw.Stores = append(nw.Stores, store)
	}
	for _, s := range nw.Nodes {
		for _, o := range nw.Nodes {
			if o == s {
				continue
			}
			var na krpc.NodeAddr
			na.FromUDPAddr(o.Addr().(*net.UDPAddr))
			if err := s.AddNode(krpc.NodeInfo{ID: o.ID(), Addr: na}); err != nil {
				// A full bucket refuses the node; that is how Kademlia
				// tables are meant to be.
				continue
			}
		}
	}
	// Nodes only hand out "good" nodes, ones that answered a query: let
	// every node ping the nodes its table kept, with bounded concurrency.
	type pair struct{ from, to *dht.Server }
	work := make(chan pair)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for p := range work {
				p.from.Ping(p.to.Addr().(*net.UDPAddr))
			}
		})
	}
	byAddr := map[string]*dht.Server{}
	for _, s := range nw.Nodes {
		byAddr[s.Addr().String()] = s
	}
	for _, s := range nw.Nodes {
		for _, ni := range s.Nodes() {
			if o := byAddr[ni.Addr.String()]; o != nil {
				work <- pair{s, o}
			}
		}
	}
	close(work)
	wg.Wait()
	return nw
}

// Addrs returns the first k node addresses as host:port strings (all if
// k <= 0 or larger than the network), for use as bootstrap nodes.
func (nw *Network) Addrs(k int) []string {
	if k <= 0 || k > len(nw.Nodes) {
		k = len(nw.Nodes)
	}
	out := make([]string, k)
	for i := range out {
		out[i] = nw.Nodes[i].Addr().String()
	}
	return out
}

// Store puts peers for ih at the holders nodes whose ids are closest to ih
// (XOR distance), as announce_peer would, and returns their indices.
func (nw *Network) Store(ih infohash.T, peers []netip.AddrPort, holders int) []int {
	idx := make([]int, len(nw.Nodes))
	for i := range idx {
		idx[i] = i
	}
	dist := func(i int) []byte {
		id := nw.Nodes[i].ID()
		d := make([]byte, 20)
		for j := range d {
			d[j] = id[j] ^ ih[j]
		}
		return d
	}
	sort.Slice(idx, func(a, b int) bool { return bytes.Compare(dist(idx[a]), dist(idx[b])) < 0 })
	holders = min(max(holders, 1), len(idx))
	for _, i := range idx[:holders] {
		for _, p := range peers {
			nw.Stores[i].AddPeer(ih, krpc.NodeAddr{IP: p.Addr().AsSlice(), Port: int(p.Port())})
		}
	}
	return idx[:holders]
}
