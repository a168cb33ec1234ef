// Command swarmmap serves a simulated swarm on 127.0.0.1 in a process of its
// own, for the benchmarks that measure an auditor (or a full client) against
// it without counting the simulator's memory, goroutines or CPU as theirs:
// the swarm-map benchmark (swarmaudit's collector vs libtorrent, whose
// driver ltmap.py lives next to this file) and the audit-memory benchmark.
//
// Every peer is an internal/swarmsim peer that serves the pieces it holds
// and downloads nothing, so each one's bitfield is known in advance and a
// map can be checked against it. Peers hold differing partial bitfields
// (each between 5% and 95% of the pieces, chosen under -seed by
// swarmsim.Plan). With -gain, each peer gains one piece it lacks at that
// interval (a HAVE on each of its connections), as peers that download do.
//
//	swarmmap -dir DIR [-swarms 1] [-spread] [-peers 1000] [-pieces 512] [-enc mixed] [-gain 0] [-life 10m]
//
// It writes DIR/swarm.torrent and DIR/peers.json (the address, peer id and
// starting bitfield of every peer) — with -swarms K, K swarms of -peers
// peers each, in DIR/swarm-I.torrent and DIR/peers-I.json, I from 0 —
// prints "ready N" on stdout once all N peers listen, and serves until
// stdin closes, SIGINT or SIGTERM arrives, or -life passes.
//
// With -count, each peer listens behind a forwarder in this process that
// counts the bytes of every connection in each direction at the socket
// (MSE handshakes, failed attempts and all): the line "bytes" on stdin is
// answered with "bytes RECEIVED SENT ACTIVE", the swarm's totals so far and
// the connections still open. That counts any visitor's traffic the same
// way, whatever its own counters include.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
)

// PeerInfo is one line of peers.json.
type PeerInfo struct {
	Addr       string `json:"addr"`
	PeerID     string `json:"peer_id"` // hex
	Encryption string `json:"encryption"`
	Pieces     int    `json:"pieces"`   // pieces held at start
	Bitfield   string `json:"bitfield"` // hex of the wire bitfield at start
}

func main() {
	var (
		dir         = flag.String("dir", "", "directory for swarm.torrent and peers.json (required)")
		peers       = flag.Int("peers", 1000, "simulated peers")
		pieces      = flag.Int("pieces", 512, "pieces of the torrent")
		pieceLength = flag.Int64("piece-length", 16<<10, "piece length in bytes")
		enc         = flag.String("enc", "mixed", "peers' encryption policy: required, preferred, disabled, or mixed (a third each)")
		seed        = flag.Uint64("seed", 1, "seed of the payload, the bitfields and the peer ids")
		gain        = flag.Duration("gain", 0, "each peer gains one missing piece this often (0: bitfields stay fixed)")
		maxConns    = flag.Int("max-conns", 8, "connections per peer at most")
		life        = flag.Duration("life", 10*time.Minute, "exit after this long at the latest")
		count       = flag.Bool("count", false, "count every connection's bytes (answer \"bytes\" on stdin)")
		swarms      = flag.Int("swarms", 1, "swarms (torrents) served, each with -peers peers")
		spread      = flag.Bool("spread", false, "each peer on its own loopback address (127.S.P.P), as peers on distinct hosts; else all on 127.0.0.1")
	)
	flag.Parse()
	cfg := config{spread: *spread, swarms: *swarms, peers: *peers, pieces: *pieces, pieceLength: *pieceLength, enc: *enc, seed: *seed, gain: *gain, maxConns: *maxConns, life: *life, count: *count}
	if err := run(*dir, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "swarmmap:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	swarms, peers, pieces, maxConns int
	pieceLength                     int64
	enc                             string
	seed                            uint64
	gain, life                      time.Duration
	count, spread                   bool
}

func run(dir string, c config) error {
	if dir == "" || c.swarms <= 0 || c.peers <= 0 || c.pieces <= 0 || c.pieceLength <= 0 || c.maxConns <= 0 || c.life <= 0 {
		return fmt.Errorf("needs -dir and positive -swarms, -peers, -pieces, -piece-length, -max-conns and -life")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelLife := context.WithTimeout(ctx, c.life)
	defer cancelLife()
	var sim []*swarmsim.Peer
	var fwd forwarders
	defer func() {
		fwd.close()
		var wg sync.WaitGroup
		for _, p := range sim {
			wg.Go(func() { p.Close() })
		}
		wg.Wait()
	}()
	for k := range c.swarms {
		// One swarm keeps the names swarm.torrent and peers.json; several
		// are swarm-K.torrent and peers-K.json, K from 0.
		suffix := ""
		if c.swarms > 1 {
			suffix = fmt.Sprintf("-%d", k)
		}
		peers, err := startSwarm(ctx, dir, suffix, c, c.seed+uint64(k), &fwd)
		sim = append(sim, peers...)
		if err != nil {
			return err
		}
	}

	go func() {
		defer cancel() // the parent closed stdin or died
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "bytes" {
				fmt.Printf("bytes %d %d %d\n", fwd.recv.Load(), fwd.sent.Load(), fwd.active.Load())
			}
		}
	}()
	if c.gain > 0 {
		go gainPieces(ctx, sim, c.gain, c.seed)
	}
	fmt.Printf("ready %d\n", len(sim))
	<-ctx.Done()
	return nil
}

// startSwarm starts one swarm's peers and writes its swarm*.torrent and
// peers*.json; it returns the peers started, also on error.
func startSwarm(ctx context.Context, dir, suffix string, c config, seed uint64, fwd *forwarders) ([]*swarmsim.Peer, error) {
	n := c.peers
	payload, tor, err := swarmsim.NewPayload("swarmmap"+suffix+".bin", int64(c.pieces)*c.pieceLength, c.pieceLength, seed)
	if err != nil {
		return nil, err
	}
	specs, err := peerSpecs(n, c.enc, seed)
	if err != nil {
		return nil, err
	}
	plans, err := swarmsim.Plan(swarmsim.SwarmConfig{Payload: payload, Peers: specs, Seed: seed})
	if err != nil {
		return nil, err
	}
	sim := make([]*swarmsim.Peer, 0, n)
	infos := make([]PeerInfo, n)
	for i, spec := range specs {
		listen := "127.0.0.1:0"
		if c.spread { // 127.S.P.P: swarm S (1-250), peer P (up to 62,500 per swarm)
			listen = fmt.Sprintf("127.%d.%d.%d:0", 1+int(seed-c.seed)%250, i/250%250, i%250+1)
		}
		p, err := swarmsim.StartPeer(listen, swarmsim.PeerConfig{
			Payload: payload, PeerID: plans[i].PeerID, Have: plans[i].Have, Encryption: spec.Encryption,
			MaxConns: c.maxConns, Seed: plans[i].Seed, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			return sim, fmt.Errorf("start peer %d: %w", i, err)
		}
		sim = append(sim, p)
		addr := p.Addr()
		if c.count {
			if addr, err = fwd.start(ctx, p.Addr()); err != nil {
				return sim, fmt.Errorf("forwarder for peer %d: %w", i, err)
			}
		}
		infos[i] = PeerInfo{Addr: addr.String(), PeerID: hex.EncodeToString(plans[i].PeerID[:]),
			Encryption: string(spec.Encryption), Pieces: plans[i].Have.Count(), Bitfield: hex.EncodeToString(plans[i].Have.Bytes())}
	}
	mi, err := swarmsim.MetainfoFile(tor)
	if err != nil {
		return sim, err
	}
	if err := os.WriteFile(filepath.Join(dir, "swarm"+suffix+".torrent"), mi, 0o644); err != nil {
		return sim, err
	}
	js, err := json.Marshal(infos)
	if err != nil {
		return sim, err
	}
	return sim, os.WriteFile(filepath.Join(dir, "peers"+suffix+".json"), js, 0o644)
}

// peerSpecs gives every peer a partial bitfield of 5-95% of the pieces and
// its encryption policy.
func peerSpecs(n int, enc string, seed uint64) ([]swarmsim.PeerSpec, error) {
	all := []swarmsim.Encryption{swarmsim.EncRequired, swarmsim.EncPreferred, swarmsim.EncDisabled}
	r := rand.New(rand.NewPCG(seed, 0x6d6170)) // "map"
	specs := make([]swarmsim.PeerSpec, n)
	for i := range specs {
		e := swarmsim.Encryption(enc)
		switch e {
		case "mixed":
			e = all[i%len(all)]
		case swarmsim.EncRequired, swarmsim.EncPreferred, swarmsim.EncDisabled:
		default:
			return nil, fmt.Errorf("-enc %q: want required, preferred, disabled or mixed", enc)
		}
		specs[i] = swarmsim.PeerSpec{Role: swarmsim.RoleLeecher, Have: 0.05 + 0.9*r.Float64(), Encryption: e}
	}
	return specs, nil
}

// gainPieces gives the peers, in turn, one missing piece each per period.
func gainPieces(ctx context.Context, sim []*swarmsim.Peer, every time.Duration, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x6861766573)) // "haves"
	step := every / time.Duration(len(sim))
	if step <= 0 {
		step = time.Microsecond
	}
	t := time.NewTicker(step)
	defer t.Stop()
	for i := 0; ; i = (i + 1) % len(sim) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		have := sim[i].Have()
		if missing := have.Len() - have.Count(); missing > 0 {
			k := r.IntN(missing)
			for j := range have.Len() {
				if !have.Has(j) {
					if k == 0 {
						sim[i].Gain(j)
						break
					}
					k--
				}
			}
		}
	}
}

// forwarders put a counting TCP forwarder in front of each peer.
type forwarders struct {
	recv, sent, active atomic.Int64
	lns                []net.Listener
	wg                 sync.WaitGroup
}

// start listens on a new loopback port and forwards every connection to
// target; it returns the new address.
func (f *forwarders) start(ctx context.Context, target netip.AddrPort) (netip.AddrPort, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return netip.AddrPort{}, err
	}
	f.lns = append(f.lns, ln)
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Go(func() { f.pipe(ctx, c, target) })
		}
	})
	return netip.MustParseAddrPort(ln.Addr().String()), nil
}

func (f *forwarders) close() {
	for _, ln := range f.lns {
		ln.Close()
	}
	f.wg.Wait()
}

// pipe copies both ways between the visitor and the peer, counting. When
// one direction ends, the other is passed on as a half-close and given 10 s
// to finish.
func (f *forwarders) pipe(ctx context.Context, visitor net.Conn, target netip.AddrPort) {
	f.active.Add(1)
	defer f.active.Add(-1)
	defer visitor.Close()
	d := net.Dialer{Timeout: 5 * time.Second}
	peer, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return
	}
	defer peer.Close()
	stop := context.AfterFunc(ctx, func() { visitor.Close(); peer.Close() })
	defer stop()
	linger := func() {
		t := time.Now().Add(10 * time.Second)
		visitor.SetDeadline(t)
		peer.SetDeadline(t)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(countWriter{peer, &f.recv}, visitor)
		peer.(*net.TCPConn).CloseWrite()
		linger()
	}()
	io.Copy(countWriter{visitor, &f.sent}, peer)
	visitor.(*net.TCPConn).CloseWrite()
	linger()
	<-done
}

// countWriter adds what it writes to n.
type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n.Add(int64(k))
	return k, err
}
