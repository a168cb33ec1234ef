package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"text/tabwriter"

	"github.com/dustin/go-humanize"

	"github.com/swarmaudit/swarmaudit/internal/observation/probe"
	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
)

// simPeer describes one peer of the --sim swarm.
type simPeer struct {
	label string
	cfg   swarmsim.PeerConfig
	down  bool // not listening: the probe is refused
}

// runSimProbe starts a handful of simulated peers on 127.0.0.1, probes each
// concurrently (one goroutine per connection) and prints what it found next
// to what each peer really is.
func runSimProbe(ctx context.Context, w io.Writer, opts probe.Options, asJSON bool) error {
	payload, t, err := swarmsim.NewPayload("swarmaudit-sim.bin", 8<<20, 256<<10, 1)
	if err != nil {
		return err
	}
	n := t.NumPieces
	half := bitfield.New(n)
	for i := 0; i < n/2; i++ {
		half.Set(i)
	}
	peers := []simPeer{
		{label: "seeder, encryption required, 1 MiB/s", cfg: swarmsim.PeerConfig{Have: bitfield.Full(n), Encryption: swarmsim.EncRequired, UploadRate: 1 << 20}},
		{label: "seeder, encryption preferred, 512 KiB/s", cfg: swarmsim.PeerConfig{Have: bitfield.Full(n), Encryption: swarmsim.EncPreferred, UploadRate: 512 << 10}},
		{label: "half-done leecher, plaintext only, 256 KiB/s", cfg: swarmsim.PeerConfig{Have: half, Encryption: swarmsim.EncDisabled, UploadRate: 256 << 10}},
		{label: "seeder serving corrupt data", cfg: swarmsim.PeerConfig{Have: bitfield.Full(n), Encryption: swarmsim.EncPreferred, BadData: true}},
		{label: "seeder that never unchokes", cfg: swarmsim.PeerConfig{Have: bitfield.Full(n), Encryption: swarmsim.EncPreferred, NeverUnchoke: true}},
		{label: "address with nobody listening", down: true},
	}
	addrs := make([]netip.AddrPort, len(peers))
	for i, sp := range peers {
		if sp.down {
			addrs[i], err = closedPort()
			if err != nil {
				return err
			}
			continue
		}
		sp.cfg.Payload = payload
		sp.cfg.PeerID = peerid.New("-SS0100-")
		sp.cfg.ClientName = "swarmsim"
		p, err := swarmsim.StartPeer("127.0.0.1:0", sp.cfg)
		if err != nil {
			return err
		}
		defer p.Close()
		addrs[i] = p.Addr()
	}
	if opts.Timeout > 15e9 {
		opts.Timeout = 15e9 // the never-unchoking peer holds a probe this long
	}
	results := make([]*probe.Result, len(peers))
	var wg sync.WaitGroup
	for i := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = probe.Run(ctx, addrs[i], targetOf(t), opts)
		}()
	}
	wg.Wait()
	if asJSON {
		type row struct {
			Truth  string        `json:"truth"`
			Result *probe.Result `json:"result"`
		}
		rows := make([]row, len(peers))
		for i := range peers {
			rows[i] = row{peers[i].label, results[i]}
		}
		return writeJSON(w, rows)
	}
	fmt.Fprintf(w, "simulated swarm: %s in %d pieces of %s, info hash %x\n\n",
		humanize.IBytes(uint64(t.TotalLength)), n, humanize.IBytes(uint64(t.PieceLength)), t.InfoHash)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tWHAT IT REALLY IS\tOUTCOME\tENCRYPTION\tPIECES\tUPLOAD RATE\tHASHES OK/BAD")
	for i, r := range results {
		if r == nil {
			continue
		}
		rate := "-"
		if r.ThroughputBytesPerSec > 0 {
			rate = fmt.Sprintf("%s/s ±%.0f%%", humanize.IBytes(uint64(r.ThroughputBytesPerSec)), 100*r.ThroughputSpread)
		}
		enc := r.Encryption
		if enc == "" {
			enc = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%d/%d\n", r.Peer, peers[i].label, r.Outcome, enc,
			r.PiecesHave, r.PiecesTotal, rate, r.PiecesVerified, r.PiecesFailed)
	}
	return tw.Flush()
}

// closedPort returns a loopback address nobody listens on.
func closedPort() (netip.AddrPort, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer ln.Close()
	return netip.ParseAddrPort(ln.Addr().String())
}
