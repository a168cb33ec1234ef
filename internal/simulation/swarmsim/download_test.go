package swarmsim

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// downloadingPeer starts a downloading peer with no connections; tests
// drive its downloader directly.
func downloadingPeer(t testing.TB, pieces int, seed uint64, have ...int) *Peer {
	t.Helper()
	payload, _, err := NewPayload("d.bin", int64(pieces)*16<<10, 16<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	bf := bitfield.New(pieces)
	for _, i := range have {
		bf.Set(i)
	}
	p, err := StartPeer("127.0.0.1:0", PeerConfig{Payload: payload, Have: bf, Download: true, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func bf(n int, set ...int) bitfield.Bitfield {
	b := bitfield.New(n)
	for _, i := range set {
		b.Set(i)
	}
	return b
}

func TestPickRarestFirst(t *testing.T) {
	tests := []struct {
		name     string
		avail    []int32
		remote   []int
		have     []int
		started  []int
		want     []int // acceptable picks; empty: none
		pickable bool
	}{
		{"rarest wins", []int32{3, 1, 2, 1}, []int{0, 1, 2, 3}, nil, nil, []int{1, 3}, true},
		{"only what the remote has", []int32{3, 1, 2, 1}, []int{0, 2}, nil, nil, []int{2}, true},
		{"not what we have", []int32{3, 1, 2, 1}, []int{0, 1, 2, 3}, []int{1, 3}, nil, []int{2}, true},
		{"not what is under way", []int32{3, 1, 2, 1}, []int{0, 1, 2, 3}, []int{1}, []int{3}, []int{2}, true},
		{"nothing new", []int32{1, 1, 1, 1}, []int{1, 3}, []int{1}, []int{3}, nil, false},
		{"remote has nothing", []int32{0, 0, 0, 0}, nil, nil, nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := downloadingPeer(t, 4, 1, tt.have...)
			k := &conn{p: p, remoteHave: bf(4, tt.remote...)}
			p.mu.Lock()
			defer p.mu.Unlock()
			copy(p.dl.avail, tt.avail)
			for _, i := range tt.started {
				p.dl.startLocked(i, nil)
			}
			for range 20 { // ties are broken at random: every pick must be acceptable
				got, ok := p.dl.pickLocked(k)
				if ok != tt.pickable || (ok && !slices.Contains(tt.want, got)) {
					t.Fatalf("picked %d, %v; want one of %v, %v", got, ok, tt.want, tt.pickable)
				}
			}
		})
	}
}

// TestPickOrderDeterministic: the same seed and state give the same order
// of pieces; ties are not simply taken lowest-first.
func TestPickOrderDeterministic(t *testing.T) {
	order := func(seed uint64) []int {
		p := downloadingPeer(t, 64, seed)
		k := &conn{p: p, remoteHave: bitfield.Full(64)}
		p.mu.Lock()
		defer p.mu.Unlock()
		var picks []int
		for {
			i, ok := p.dl.pickLocked(k)
			if !ok {
				break
			}
			p.dl.startLocked(i, k)
			picks = append(picks, i)
		}
		return picks
	}
	a, b, c := order(7), order(7), order(8)
	if len(a) != 64 || !slices.Equal(a, b) {
		t.Fatalf("same seed, different orders:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) || slices.IsSorted(a) {
		t.Errorf("seed 8 gives the same order as seed 7, or the order is sorted: %v", a)
	}
}

// TestEndGame: once every missing piece is under way, a block already
// requested elsewhere is requested once more, never twice from one
// connection, never three times.
func TestEndGame(t *testing.T) {
	p := downloadingPeer(t, 2, 1, 0)
	k1 := &conn{p: p, remoteHave: bitfield.Full(2), amInterested: true, wanted: 1, wakeW: make(chan struct{}, 1)}
	k2 := &conn{p: p, remoteHave: bitfield.Full(2), amInterested: true, wanted: 1, wakeW: make(chan struct{}, 1)}
	k3 := &conn{p: p, remoteHave: bitfield.Full(2), amInterested: true, wanted: 1, wakeW: make(chan struct{}, 1)}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range []*conn{k1, k2, k3} {
		p.dl.fillLocked(k)
	}
	want := blockReq{1, 0, 16 << 10}
	if !slices.Equal(k1.reqs, []blockReq{want}) || !slices.Equal(k2.reqs, []blockReq{want}) || len(k3.reqs) != 0 {
		t.Fatalf("requests %v %v %v", k1.reqs, k2.reqs, k3.reqs)
	}
	if len(k1.out) != 1 || k1.out[0].Type != pp.Request {
		t.Errorf("k1 queued %v", k1.out)
	}
	// k1 goes away: its request returns to the pool and k3 takes it up.
	p.dl.releaseLocked(k1)
	p.dl.fillLocked(k3)
	if !slices.Equal(k3.reqs, []blockReq{want}) {
		t.Errorf("after release, k3 requests %v", k3.reqs)
	}
}

func TestPlan(t *testing.T) {
	payload, _, err := NewPayload("p.bin", 40*16<<10, 16<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	specs := []PeerSpec{{Role: RoleSeeder}, {Role: RoleLeecher}, {Role: RoleLeecher, Have: 0.25}, {Role: RoleLeecher, Have: 0.999}, {Role: RoleLeecher, Have: 1}}
	cfg := SwarmConfig{Payload: payload, Peers: specs, Seed: 11}
	a, err := Plan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Plan(cfg)
	cfg.Seed = 12
	c, _ := Plan(cfg)
	for i := range a {
		if a[i].PeerID != b[i].PeerID || !a[i].Have.Equal(b[i].Have) || a[i].Seed != b[i].Seed || a[i].Jitter != b[i].Jitter {
			t.Errorf("member %d: plans differ under one seed", i)
		}
		if a[i].PeerID == c[i].PeerID {
			t.Errorf("member %d: same peer id under another seed", i)
		}
		if string(a[i].PeerID[:8]) != "-SM0100-" {
			t.Errorf("member %d: peer id %q", i, a[i].PeerID)
		}
	}
	for i, want := range []int{40, 0, 10, 39, 40} {
		if got := a[i].Have.Count(); got != want {
			t.Errorf("member %d starts with %d pieces, want %d", i, got, want)
		}
	}
	if a[2].Have.Equal(c[2].Have) {
		t.Error("another seed chose the same starting pieces")
	}
}

func TestLieApply(t *testing.T) {
	tests := []struct {
		lie              Lie
		up, down         int64
		elapsed          time.Duration
		wantUp, wantDown int64
	}{
		{Lie{}, 100, 200, time.Minute, 100, 200},
		{Lie{Kind: LieMultiply, Factor: 3}, 100, 200, time.Minute, 300, 200},
		{Lie{Kind: LieMultiply, Factor: 1e30}, 100, 200, 0, 1<<63 - 1, 200},
		{Lie{Kind: LieInflate, Rate: 1000}, 100, 200, 2 * time.Second, 2100, 200},
		{Lie{Kind: LieInflate, Rate: 1000}, 100, 200, -time.Second, 100, 200},
		{Lie{Kind: LieUnderreportDownload}, 100, 2000, time.Minute, 100, 200},
		{Lie{Kind: LieUnderreportDownload, Factor: 0.5}, 100, 2000, time.Minute, 100, 1000},
	}
	for _, tt := range tests {
		if err := tt.lie.check(); err != nil {
			t.Errorf("%+v: %v", tt.lie, err)
		}
		up, down := tt.lie.Apply(tt.up, tt.down, tt.elapsed)
		if up != tt.wantUp || down != tt.wantDown {
			t.Errorf("%+v.Apply(%d, %d, %v) = %d, %d; want %d, %d", tt.lie, tt.up, tt.down, tt.elapsed, up, down, tt.wantUp, tt.wantDown)
		}
	}
}

// TestDuplicateConnections: two peers that dial each other end up with one
// connection between them.
func TestDuplicateConnections(t *testing.T) {
	payload, _, err := NewPayload("dup.bin", 8*16<<10, 16<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	start := func(id string, have bitfield.Bitfield) *Peer {
		var pid [20]byte
		copy(pid[:], id)
		// A slow upload (beyond the burst) keeps both peers incomplete.
		p, err := StartPeer("127.0.0.1:0", PeerConfig{Payload: payload, PeerID: pid, Have: have, Download: true, UploadRate: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	a := start("-SM0100-aaaaaaaaaaaa", bf(8, 0, 1, 2, 3))
	b := start("-SM0100-bbbbbbbbbbbb", bf(8, 4, 5, 6, 7))
	a.AddPeers(b.Addr())
	b.AddPeers(a.Addr())
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		na, da := len(a.conns), a.pending+a.dialing
		a.mu.Unlock()
		b.mu.Lock()
		nb, db := len(b.conns), b.pending+b.dialing
		b.mu.Unlock()
		if na == 1 && nb == 1 && da == 0 && db == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections: a %d (%d pending), b %d (%d pending)", na, da, nb, db)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDuplicateRule: of two connections between the same peers, the one
// opened by the smaller peer id is kept, and both ends agree; several
// incoming connections from one id (an auditor's) are all kept.
func TestDuplicateRule(t *testing.T) {
	small, large := [20]byte{'a'}, [20]byte{'b'}
	tests := []struct {
		name          string
		self, remote  [20]byte
		existingOut   bool
		newOut        bool
		keepNew, kept bool // new one registered; existing one still open
	}{
		{"smaller end: keeps its outgoing", small, large, true, false, false, true},
		{"larger end: takes the smaller's", large, small, true, false, true, false},
		{"smaller end: new outgoing wins", small, large, false, true, true, false},
		{"larger end: new outgoing loses", large, small, false, true, false, true},
		{"two incoming from one id", small, large, false, false, true, true},
	}
	payload, _, err := NewPayload("r.bin", 64<<10, 16<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := StartPeer("127.0.0.1:0", PeerConfig{Payload: payload, PeerID: tt.self, Download: true})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			mk := func(out bool) *conn {
				c := peerwire.NewStreamConn(nil, peerwire.DefaultMaxMessage)
				c.PeerID = tt.remote
				return &conn{p: p, c: c, outgoing: out, id: tt.remote, wakeW: make(chan struct{}, 1)}
			}
			old, nu := mk(tt.existingOut), mk(tt.newOut)
			p.mu.Lock()
			defer p.mu.Unlock()
			if r := p.registerLocked(old); r != "" {
				t.Fatal(r)
			}
			reason := p.registerLocked(nu)
			if (reason == "") != tt.keepNew || old.closed == tt.kept {
				t.Errorf("new registered: %v (%q), existing open: %v", reason == "", reason, !old.closed)
			}
		})
	}
}

// TestAddPeersLoopbackOnly: addresses off loopback, port 0 and the peer's
// own address are never taken.
func TestAddPeersLoopbackOnly(t *testing.T) {
	p := downloadingPeer(t, 4, 1)
	n := p.AddPeers(netip.MustParseAddrPort("192.0.2.1:6881"), netip.MustParseAddrPort("127.0.0.1:0"), p.Addr(),
		netip.MustParseAddrPort("[::ffff:127.0.0.2]:7000"), netip.MustParseAddrPort("127.0.0.3:7000"), netip.MustParseAddrPort("127.0.0.3:7000"))
	if n != 2 {
		t.Errorf("took %d addresses, want 2", n)
	}
}

// TestUnconnectablePeer: nothing listens at its address, yet it downloads
// by dialling out.
func TestUnconnectablePeer(t *testing.T) {
	payload, _, err := NewPayload("u.bin", 128<<10, 16<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := StartPeer("127.0.0.1:0", PeerConfig{Payload: payload, Have: bitfield.Full(8)})
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Close()
	p, err := StartPeer("127.0.0.1:0", PeerConfig{Payload: payload, PeerID: [20]byte{'u'}, Download: true, Unconnectable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if c, err := net.Dial("tcp", p.Addr().String()); err == nil {
		c.Close()
		t.Fatal("an unconnectable peer accepted a connection")
	}
	p.AddPeers(seed.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	select {
	case <-p.Complete():
	case <-ctx.Done():
		t.Fatalf("not complete: %d bytes left", p.Left())
	}
	// The seed counts a block after its write returns, which can be just
	// after the downloader already has it: wait for the count to settle.
	for seed.Uploaded() < int64(len(payload.Data)) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if p.Downloaded() < int64(len(payload.Data)) || seed.Uploaded() < int64(len(payload.Data)) {
		t.Errorf("downloaded %d, seed uploaded %d", p.Downloaded(), seed.Uploaded())
	}
}

// FuzzPeerMessages feeds arbitrary messages to a downloading peer that has
// half the pieces: it must never panic or hang, must end the connection
// cleanly, and must only ever hold pieces that pass their hash check.
func FuzzPeerMessages(f *testing.F) {
	payload, _, err := NewPayload("f.bin", 4*16<<10+100, 16<<10, 3)
	if err != nil {
		f.Fatal(err)
	}
	msg := func(ms ...pp.Message) []byte {
		var b []byte
		for _, m := range ms {
			b = append(b, m.MustMarshalBinary()...)
		}
		return b
	}
	f.Add(msg(pp.Message{Type: pp.Bitfield, Bitfield: []bool{true, true, true, true, true, false, false, false}},
		pp.Message{Type: pp.Unchoke},
		pp.Message{Type: pp.Piece, Index: 1, Begin: 0, Piece: payload.Data[16<<10 : 32<<10]},
		pp.Message{Type: pp.Piece, Index: 3, Begin: 0, Piece: make([]byte, 16<<10)}))
	f.Add(msg(pp.Message{Type: pp.HaveAll}, pp.Message{Type: pp.Unchoke}, pp.Message{Type: pp.Reject, Index: 1, Length: 16 << 10},
		pp.Message{Type: pp.Piece, Index: 4, Begin: 0, Piece: payload.Data[4*16<<10:]}, pp.Message{Type: pp.Choke}))
	f.Add(msg(pp.Message{Type: pp.Have, Index: 99}))
	f.Add(msg(pp.Message{Type: pp.Interested}, pp.Message{Type: pp.Request, Index: 0, Begin: 0, Length: 16 << 10},
		pp.Message{Type: pp.Cancel, Index: 0, Begin: 0, Length: 16 << 10}, pp.Message{Type: pp.NotInterested}))
	f.Add(msg(pp.Message{Type: pp.Piece, Index: 2, Begin: 1 << 20, Piece: []byte{1}}))
	f.Add([]byte{0, 0, 0, 1, 20})
	f.Fuzz(func(t *testing.T, data []byte) {
		have := bf(5, 0, 2)
		p, err := StartPeer("127.0.0.1:0", PeerConfig{Payload: payload, Have: have, Download: true, Unconnectable: true, KeepData: true})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		c := peerwire.NewStreamConn(data, peerwire.DefaultMaxMessage)
		p.mu.Lock()
		p.pending++
		p.mu.Unlock()
		ran := make(chan struct{})
		go func() {
			defer close(ran)
			p.run(c, false, netip.AddrPort{})
		}()
		select {
		case <-ran:
		case <-time.After(30 * time.Second): // a hang, not slowness: one stream takes microseconds
			buf := make([]byte, 1<<20)
			t.Fatalf("hung:\n%s", buf[:runtime.Stack(buf, true)])
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.conns) != 0 || p.pending != 0 {
			t.Fatalf("%d connections, %d pending after the stream ended", len(p.conns), p.pending)
		}
		for i, a := range p.dl.avail {
			if a != 0 {
				t.Fatalf("availability of piece %d is %d with no connection", i, a)
			}
		}
		for _, pt := range p.dl.order {
			for _, r := range pt.reqBy {
				if len(r) != 0 {
					t.Fatalf("piece %d has requests outstanding on a closed connection", pt.piece)
				}
			}
		}
		for _, i := range p.have.Indices() {
			off := int64(i) * payload.PieceLength
			size := payload.PieceSize(i)
			if string(p.dl.data[off:off+size]) != string(payload.Data[off:off+size]) {
				t.Fatalf("holds piece %d with the wrong bytes", i)
			}
		}
	})
}

// TestDropUninterested: with DropUninterested set, a connection on which
// neither side is interested is closed after that long (as aria2 does), and
// one whose remote is interested is kept.
func TestDropUninterested(t *testing.T) {
	payload, tor, err := NewPayload("idle.bin", 4*16<<10, 16<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	const idle = 300 * time.Millisecond
	p, err := StartPeer("127.0.0.1:0", PeerConfig{Payload: payload, Have: bitfield.Full(tor.NumPieces), DropUninterested: idle})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(interested bool) (*peerwire.Conn, time.Time) {
		c, err := peerwire.Dial(ctx, p.Addr(), peerwire.Config{InfoHash: tor.InfoHash, PeerID: [20]byte{'w', byte(len(payload.Data))}, Policy: peerwire.PolicyPlaintext})
		if err != nil {
			t.Fatal(err)
		}
		if interested {
			if err := c.WriteMessages(pp.Message{Type: pp.Interested}); err != nil {
				t.Fatal(err)
			}
		}
		return c, time.Now()
	}
	// readUntilClosed reads until the peer hangs up or limit passes.
	readUntilClosed := func(c *peerwire.Conn, limit time.Duration) bool {
		c.SetDeadline(time.Now().Add(limit))
		for {
			if _, err := c.ReadMessage(); err != nil {
				var ne net.Error
				return !(errors.As(err, &ne) && ne.Timeout())
			}
		}
	}
	idleConn, opened := dial(false)
	defer idleConn.Close()
	busyConn, _ := dial(true)
	defer busyConn.Close()
	if !readUntilClosed(idleConn, 5*time.Second) {
		t.Fatalf("an uninterested connection was still open after 5 s, want it closed after %v", idle)
	}
	if d := time.Since(opened); d < idle {
		t.Errorf("closed after %v, before %v", d, idle)
	}
	if readUntilClosed(busyConn, 4*idle) {
		t.Errorf("a connection whose remote is interested was closed")
	}
}
