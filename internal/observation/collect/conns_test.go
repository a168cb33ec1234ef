package collect

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/observation/watch"
	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// connCounter counts the auditor's live connections, from its own side
// (its dialer and its listener: exact, where a count at the peers would
// see a closed connection late), in total and per peer IP (every fake peer
// has its own), and keeps the maxima.
type connCounter struct {
	mu      sync.Mutex
	live    int
	maxLive int
	per     map[netip.Addr]int
	maxPer  map[netip.Addr]int
}

// counted is a connection counted from its first use until Close: an
// incoming one refused at the cap is accepted and closed unused, and never
// held.
type counted struct {
	net.Conn
	c      *connCounter
	ip     netip.Addr
	once   sync.Once
	closed sync.Once
	used   atomic.Bool
}

func (k *counted) use() {
	k.once.Do(func() { k.used.Store(true); k.c.add(k.ip, 1) })
}
func (k *counted) Read(b []byte) (int, error)  { k.use(); return k.Conn.Read(b) }
func (k *counted) Write(b []byte) (int, error) { k.use(); return k.Conn.Write(b) }
func (k *counted) Close() error {
	k.closed.Do(func() {
		k.once.Do(func() {}) // never counted after its close
		if k.used.Load() {
			k.c.add(k.ip, -1)
		}
	})
	return k.Conn.Close()
}

func (c *connCounter) wrap(conn net.Conn, remote string) net.Conn {
	ap, _ := netip.ParseAddrPort(remote)
	return &counted{Conn: conn, c: c, ip: ap.Addr().Unmap()}
}

// DialContext counts the auditor's outgoing connections.
func (c *connCounter) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return c.wrap(conn, addr), nil
}

// countingListener counts the auditor's incoming connections.
type countingListener struct {
	net.Listener
	c *connCounter
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.c.wrap(conn, conn.RemoteAddr().String()), nil
}

func (c *connCounter) add(a netip.Addr, d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live += d
	c.per[a] += d
	c.maxLive = max(c.maxLive, c.live)
	c.maxPer[a] = max(c.maxPer[a], c.per[a])
}

// fakePeer listens on its own loopback IP, answers handshakes, sends a
// bitfield and keeps each connection until the auditor closes it (a real
// client would drop a second connection from one IP, which is what the
// collector must never open). It can also connect to the auditor from its IP,
// naming its listen port in its extension handshake (BEP 10 `p`).
type fakePeer struct {
	addr netip.AddrPort
	ln   net.Listener
	tor  *torrentmeta.Torrent
	wg   sync.WaitGroup
}

func startFakePeer(t *testing.T, ip string, tor *torrentmeta.Torrent) *fakePeer {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	p := &fakePeer{addr: netip.MustParseAddrPort(ln.Addr().String()), ln: ln, tor: tor}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				c, err := watch.Accept(ctx, raw, watch.Options{InfoHash: tor.InfoHash, PeerID: [20]byte{'-', 'F', 'K'}})
				cancel()
				if err != nil {
					return
				}
				p.hold(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

// hold keeps a handshaken connection until the auditor closes it.
func (p *fakePeer) hold(c *peerwire.Conn) {
	defer c.Close()
	some := make([]bool, p.tor.NumPieces)
	some[0] = true
	if c.WriteMessages(pp.Message{Type: pp.Bitfield, Bitfield: some}) != nil {
		return
	}
	for {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.ReadMessage(); err != nil {
			return
		}
	}
}

// dialIn connects to the auditor from the peer's own IP.
func (p *fakePeer) dialIn(ctx context.Context, to netip.AddrPort) {
	defer p.wg.Done()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: p.addr.Addr().AsSlice()}}
	c, err := peerwire.Dial(ctx, to, peerwire.Config{InfoHash: p.tor.InfoHash, PeerID: [20]byte{'-', 'F', 'K', 'i'}, Policy: peerwire.PolicyPlaintext, Network: peerwire.Network{Dialer: d}})
	if err != nil {
		return
	}
	ext, _ := bencode.Marshal(map[string]any{"m": map[string]int{"ut_pex": 1}, "p": int(p.addr.Port())})
	if c.WriteMessages(pp.Message{Type: pp.Extended, ExtendedID: pp.HandshakeExtendedID, ExtendedPayload: ext}) != nil {
		c.Close()
		return
	}
	p.hold(c)
}

// TestCollectorOwnsEveryConnection: with watches, PEX and incoming
// connections all on, --max-conns bounds every connection the auditor
// holds, and no peer address ever has two connections at once, although
// the peers also connect to the auditor from their own addresses.
func TestCollectorOwnsEveryConnection(t *testing.T) {
	for _, outgoingWatches := range []bool{true, false} {
		t.Run(fmt.Sprintf("outgoing watches %v", outgoingWatches), func(t *testing.T) { testOwnership(t, outgoingWatches) })
	}
}

func testOwnership(t *testing.T, outgoingWatches bool) {
	_, tor, err := swarmsim.NewPayload("owner.bin", 1<<20, 64<<10, 9)
	if err != nil {
		t.Fatal(err)
	}
	counter := &connCounter{per: map[netip.Addr]int{}, maxPer: map[netip.Addr]int{}}
	const peers, maxConns = 10, 8
	var fakes []*fakePeer
	for i := range peers {
		fakes = append(fakes, startFakePeer(t, fmt.Sprintf("127.0.3.%d", 10+i), tor))
	}
	st, swarm := openStore(t, tor)
	book := addrbook.New(addrbook.Options{})
	for _, p := range fakes {
		book.Add(p.addr, addrbook.Tracker("http://127.0.0.1/announce"), 0)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col, err := New(Config{
		Torrent: tor, Store: st, Swarm: swarm, Book: book, Watch: outgoingWatches, PEX: true, Listener: countingListener{ln, counter}, Network: peerwire.Network{Dialer: counter},
		SnapshotInterval: 200 * time.Millisecond, ProbeInterval: 300 * time.Millisecond, ProbeBytes: 64 << 10,
		ProbeTimeout: time.Second, MaxConns: maxConns, MaxBandwidthProbes: 2, RewatchAfter: 100 * time.Millisecond,
		Policy: peerwire.PolicyPlaintext,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- col.Run(ctx) }()
	// Every peer also connects in, three times over the run.
	listen := netip.MustParseAddrPort(ln.Addr().String())
	for round := range 3 {
		time.Sleep(time.Duration(round) * 1500 * time.Millisecond) // pacing of the rounds, not synchronisation
		for _, p := range fakes {
			p.wg.Add(1)
			go p.dialIn(ctx, listen)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	counter.mu.Lock()
	defer counter.mu.Unlock()
	if counter.maxLive > maxConns {
		t.Errorf("%d connections at once, --max-conns %d", counter.maxLive, maxConns)
	}
	for a, n := range counter.maxPer {
		if n > 1 {
			t.Errorf("%s had %d connections at once", a, n)
		}
	}
	p := col.Progress()
	if p.Probes == 0 || p.Incoming == 0 || counter.maxLive < 2 {
		t.Errorf("the test did not exercise the caps: progress %+v, max live %d", p, counter.maxLive)
	}
	t.Logf("max live %d; progress %+v", counter.maxLive, p)
}

// TestSharedBudgetPolitenessAcrossSwarms: two collectors (two swarms)
// probe one IP that is in both swarms once between them, not once each:
// on one node through a shared budget with a one-hour gap per peer, and on
// two nodes (a budget each) through a shared gate that takes turns in one
// store, as serve does on PostgreSQL.
func TestSharedBudgetPolitenessAcrossSwarms(t *testing.T) {
	for _, nodes := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d nodes", nodes), func(t *testing.T) { testPoliteness(t, nodes) })
	}
}

func testPoliteness(t *testing.T, nodes int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	budgets := []*Budget{NewBudget(16, 2, 0, 64<<10), NewBudget(16, 2, 0, 64<<10)}
	if nodes == 1 {
		budgets[1] = budgets[0]
		budgets[0].SetPeerProbeGap(time.Hour)
	} else {
		turns, _ := openStore(t, &torrentmeta.Torrent{InfoHash: [20]byte{7}, NumPieces: 1, PieceLength: 1, TotalLength: 1, Name: "turns"})
		for i, b := range budgets {
			node := fmt.Sprintf("node-%d", i)
			b.SetPeerGate(func(ip netip.Addr) bool {
				ok, err := turns.TakeTurn(context.Background(), "probe:"+ip.String(), node, time.Hour)
				if err != nil {
					t.Error(err)
				}
				return ok
			})
		}
	}
	var cols []*Collector
	var stores []func() int
	for i := range 2 {
		payload, tor, err := swarmsim.NewPayload(fmt.Sprintf("polite-%d.bin", i), 1<<20, 64<<10, uint64(20+i))
		if err != nil {
			t.Fatal(err)
		}
		p, err := swarmsim.StartPeer("127.0.3.99:0", swarmsim.PeerConfig{Payload: payload, Have: bitfield.Full(tor.NumPieces), Encryption: swarmsim.EncDisabled})
		if err != nil {
			t.Skipf("cannot listen on 127.0.3.99: %v", err)
		}
		defer p.Close()
		st, swarm := openStore(t, tor)
		book := addrbook.New(addrbook.Options{})
		book.Add(p.Addr(), addrbook.Tracker("http://127.0.0.1/announce"), 0)
		col, err := New(Config{Torrent: tor, Store: st, Swarm: swarm, Book: book, Budget: budgets[i],
			SnapshotInterval: 200 * time.Millisecond, ProbeInterval: 300 * time.Millisecond, ProbeBytes: 64 << 10, ProbeTimeout: 2 * time.Second,
			Policy: peerwire.PolicyPlaintext})
		if err != nil {
			t.Fatal(err)
		}
		cols = append(cols, col)
		stores = append(stores, func() int {
			ps, err := st.Probes(context.Background(), swarm)
			if err != nil {
				t.Fatal(err)
			}
			return len(ps)
		})
	}
	done := make(chan error, len(cols))
	for _, c := range cols {
		go func() { done <- c.Run(ctx) }()
	}
	for range cols {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := stores[0]() + stores[1](); n != 1 {
		t.Fatalf("%d bandwidth probes of one IP across two swarms on %d nodes, want 1 (one-hour gap)", n, nodes)
	}
}
