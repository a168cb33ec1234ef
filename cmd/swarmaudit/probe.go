package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/swarmaudit/swarmaudit/internal/peerid"
	"github.com/swarmaudit/swarmaudit/internal/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/probe"
	"github.com/swarmaudit/swarmaudit/internal/torrentmeta"
)

func newProbeCmd() *cobra.Command {
	var (
		torrentPath, peer, encryption, maxBytes string
		timeout                                 time.Duration
		asJSON, bitfieldOnly, sim               bool
	)
	cmd := &cobra.Command{
		Use:   "probe --torrent FILE --peer HOST:PORT",
		Short: "Probe one peer: handshake, bitfield, upload bandwidth, piece hashes",
		Long: `Connect to one peer of a torrent (MSE/PE encryption per --encryption),
read its bitfield and HAVEs, request up to --max-bytes to measure its upload
bandwidth, verify the SHA-1 of every complete piece received, and disconnect.

The exit code is non-zero only when the probe could not run at all (bad
arguments, unreadable torrent); a refused or misbehaving peer is a result.

With --sim it starts a small simulated swarm on 127.0.0.1 (peers with
different encryption policies and upload caps, one serving bad data) and
probes each of its peers: a self-contained look at what a probe reports.`,
		Example: `  swarmaudit probe --torrent ubuntu.torrent --peer 203.0.113.7:51413 --json
  swarmaudit probe --torrent t.torrent --peer [::1]:6881 --encryption require
  swarmaudit probe --sim`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			policy, err := peerwire.ParsePolicy(encryption)
			if err != nil {
				return err
			}
			limit, err := humanize.ParseBytes(maxBytes)
			if err != nil {
				return fmt.Errorf("--max-bytes %q: %w", maxBytes, err)
			}
			opts := probe.Options{
				PeerID:           peerid.New("-SA0100-"),
				Policy:           policy,
				MaxBytes:         int64(limit),
				BitfieldOnly:     bitfieldOnly || limit == 0,
				Timeout:          timeout,
				ClientName:       "swarmaudit " + version,
				ClientNameFromID: peerid.ClientName,
			}
			if sim {
				return runSimProbe(cmd.Context(), cmd.OutOrStdout(), opts, asJSON)
			}
			if torrentPath == "" || peer == "" {
				return errors.New("probe needs --torrent and --peer (or --sim)")
			}
			t, err := torrentmeta.Load(torrentPath)
			if err != nil {
				return err
			}
			addr, err := resolvePeer(cmd.Context(), peer)
			if err != nil {
				return err
			}
			r, err := probe.Run(cmd.Context(), addr, targetOf(t), opts)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			printProbe(cmd.OutOrStdout(), r)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&torrentPath, "torrent", "", "the .torrent file")
	f.StringVar(&peer, "peer", "", "peer address HOST:PORT (IPv6 as [addr]:port)")
	f.StringVar(&encryption, "encryption", "auto", "auto (MSE, falling back to plaintext), require (MSE with RC4 only) or plaintext")
	f.StringVar(&maxBytes, "max-bytes", "2MiB", "payload to request for the bandwidth measurement")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "bound on the whole probe")
	f.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	f.BoolVar(&bitfieldOnly, "bitfield-only", false, "read the bitfield and HAVEs only; request no data")
	f.BoolVar(&sim, "sim", false, "probe the peers of a simulated swarm this command starts on 127.0.0.1")
	return cmd
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
		return netip.AddrPort{}, fmt.Errorf("--peer %q: %w", s, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("--peer %q: bad port", s)
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
