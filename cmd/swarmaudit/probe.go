package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/swarmaudit/swarmaudit/internal/observation/probe"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// probeOptions are the probe command's options.
type probeOptions struct {
	probeFlags
	torrentPath, peer string
	bitfieldOnly, sim bool
}

func newProbeCmd(g *globalOptions) *cobra.Command {
	var o probeOptions
	cmd := &cobra.Command{
		Use:   "probe --torrent FILE --peer HOST:PORT",
		Short: "Probe one peer: handshake, bitfield, upload bandwidth, piece hashes",
		Long: `Connect to one peer of a torrent (MSE/PE encryption per --encryption),
read its bitfield and HAVEs, request up to --probe-bytes to measure its
upload bandwidth, verify the SHA-1 of every complete piece received, and
disconnect. With --json the result is one JSON object on stdout.

The exit code is non-zero only when the probe could not run at all (bad
arguments, unreadable torrent); a refused or misbehaving peer is a result.

With --sim it starts a small simulated swarm on 127.0.0.1 (peers with
different encryption policies and upload caps, one serving bad data) and
probes each of its peers: a self-contained look at what a probe reports.

` + exitCodesHelp,
		Example: `  swarmaudit probe --torrent ubuntu.torrent --peer 203.0.113.7:51413 --json
  swarmaudit probe --torrent t.torrent --peer [::1]:6881 --encryption require
  swarmaudit probe --sim`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runProbe(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.torrentPath, "torrent", "", "the .torrent file")
	f.StringVar(&o.peer, "peer", "", "peer address HOST:PORT (IPv6 as [addr]:port)")
	o.probeFlags.register(f)
	f.BoolVar(&o.bitfieldOnly, "bitfield-only", false, "read the bitfield and HAVEs only; request no data")
	f.BoolVar(&o.sim, "sim", false, "probe the peers of a simulated swarm this command starts on 127.0.0.1")
	return cmd
}

func runProbe(ctx context.Context, g *globalOptions, o probeOptions, _ []string) error {
	policy, limit, err := o.probeFlags.parse()
	if err != nil {
		return err
	}
	opts := probe.Options{
		PeerID:           peerid.New(peerid.Prefix),
		Policy:           policy,
		MaxBytes:         limit,
		BitfieldOnly:     o.bitfieldOnly || limit == 0,
		Timeout:          o.probeTimeout,
		ClientName:       peerid.OurName + " " + version,
		ClientNameFromID: peerid.ClientName,
	}
	if o.sim {
		return runSimProbe(ctx, g.stdout, opts, g.JSON)
	}
	if o.torrentPath == "" || o.peer == "" {
		return usagef("probe needs --torrent and --peer (or --sim)")
	}
	addr, err := resolvePeer(ctx, o.peer)
	if err != nil {
		return err
	}
	t, err := torrentmeta.Load(o.torrentPath)
	if err != nil {
		return err
	}
	nw, sock, err := o.transportFlag.network(nil, false)
	if err != nil {
		return err
	}
	if sock != nil {
		defer sock.Close()
	}
	opts.Dialer.Network = nw
	r, err := probe.Run(ctx, addr, targetOf(t), opts)
	if err != nil {
		return err
	}
	if g.JSON {
		return writeJSON(g.stdout, r)
	}
	printProbe(g.stdout, r)
	return nil
}

// targetOf adapts a loaded torrent to what the probe needs.
func targetOf(t *torrentmeta.Torrent) probe.Target {
	return probe.Target{InfoHash: t.InfoHash, NumPieces: t.NumPieces, PieceSize: t.PieceSize, Verify: t.VerifyPiece, Private: t.Private}
}

// resolvePeer parses HOST:PORT, resolving a host name with a deadline.
func resolvePeer(ctx context.Context, s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, usagef("--peer %q: %w", s, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, usagef("--peer %q: bad port", s)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("--peer %q: resolve: %w", s, err)
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), uint16(p)), nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printProbe(w io.Writer, r *probe.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "peer\t%s\n", r.Peer)
	fmt.Fprintf(tw, "outcome\t%s\n", r.Outcome)
	if r.Error != "" {
		fmt.Fprintf(tw, "error\t%s\n", r.Error)
	}
	if r.Encryption != "" {
		fmt.Fprintf(tw, "client\t%s (peer_id %s)\n", r.Client, r.PeerID)
		fmt.Fprintf(tw, "encryption\t%s, handshake %.1f ms\n", r.Encryption, r.HandshakeMS)
		fmt.Fprintf(tw, "pieces\t%d of %d (%s)\n", r.PiecesHave, r.PiecesTotal, r.BitfieldKind)
	}
	if r.BytesDownloaded > 0 {
		fmt.Fprintf(tw, "downloaded\t%s, first byte after %.1f ms\n", humanize.IBytes(uint64(r.BytesDownloaded)), r.TTFBMS)
		fmt.Fprintf(tw, "upload rate\t%s/s ± %.0f%% (%d segments)\n", humanize.IBytes(uint64(r.ThroughputBytesPerSec)), 100*r.ThroughputSpread, r.ThroughputSamples)
		fmt.Fprintf(tw, "piece hashes\t%d verified, %d failed\n", r.PiecesVerified, r.PiecesFailed)
	}
	tw.Flush()
}
