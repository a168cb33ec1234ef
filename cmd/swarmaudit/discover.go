package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmaudit/swarmaudit/internal/discovery"
	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/observation/frompeers"
	"github.com/swarmaudit/swarmaudit/internal/observation/watch"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// discoverOptions are the discover command's options.
type discoverOptions struct {
	torrentPath, magnet, bootstrap, peerListen, saveTorrent, encryption string
	transportFlag
	duration                  time.Duration
	noDHT, noPEX, denyPrivate bool
	lsdFlags
}

func newDiscoverCmd(g *globalOptions) *cobra.Command {
	var o discoverOptions
	cmd := &cobra.Command{
		Use:   "discover --torrent FILE | --magnet URI",
		Short: "Find a swarm's peers from its trackers and the DHT",
		Long: `Announce to every tracker tier of the torrent (HTTP and UDP; honest
statistics: nothing uploaded, the full size left), scrape them, and search
the DHT, for --duration. Peers are printed as they are found, with the
sources that reported them; a summary with per-source counts and scrape
results ends the run.

Private torrents use their trackers only (no DHT), as BEP 27 requires.
--deny-private-trackers refuses tracker hosts that resolve to loopback or
private addresses (off by default: private trackers on LANs exist).

With --json, stdout carries one JSON object per peer as it is found, then
{"summary": ...}.

` + exitCodesHelp,
		Example: `  swarmaudit discover --torrent debian.torrent --duration 30s --json
  swarmaudit discover --magnet 'magnet:?xt=urn:btih:...&tr=udp://tracker.example:6969' --no-dht`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiscover(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.torrentPath, "torrent", "", "the .torrent file")
	f.StringVar(&o.magnet, "magnet", "", "a magnet URI (btih, hex or base32)")
	f.DurationVar(&o.duration, "duration", 60*time.Second, "how long to look for peers")
	f.BoolVar(&o.noDHT, "no-dht", false, "do not search the DHT")
	f.BoolVar(&o.noPEX, "no-pex", false, "do not keep connections to found peers to read their PEX messages")
	f.StringVar(&o.peerListen, "peer-listen", "", "accept incoming peer connections on ADDR (e.g. :6881) and announce its port")
	f.StringVar(&o.saveTorrent, "save-torrent", "", "with --magnet: write the .torrent built from the fetched metadata to FILE")
	f.StringVar(&o.encryption, "encryption", "auto", "auto (MSE, falling back to plaintext), require (MSE with RC4 only) or plaintext")
	o.transportFlag.register(f)
	f.StringVar(&o.bootstrap, "dht-bootstrap", "", "DHT bootstrap nodes HOST:PORT,... (default: the well-known public routers)")
	f.BoolVar(&o.denyPrivate, "deny-private-trackers", false, "refuse trackers whose host resolves to a loopback or private address")
	o.lsdFlags.register(f)
	return cmd
}

func runDiscover(ctx context.Context, g *globalOptions, o discoverOptions, _ []string) error {
	var (
		cfg discovery.Config
		tor *torrentmeta.Torrent
		m   *torrentmeta.Magnet
	)
	policy, err := peerwire.ParsePolicy(o.encryption)
	if err != nil {
		return usagef("--encryption: %w", err)
	}
	if err := positive("duration", o.duration); err != nil {
		return err
	}
	switch {
	case o.torrentPath != "" && o.magnet != "":
		return usagef("give --torrent or --magnet, not both")
	case o.torrentPath != "":
		if tor, err = torrentmeta.Load(o.torrentPath); err != nil {
			return err
		}
		cfg = discovery.FromTorrent(tor)
	case o.magnet != "":
		if m, err = torrentmeta.ParseMagnet(o.magnet); err != nil {
			return usagef("--magnet: %w", err)
		}
		var skipped []string
		cfg, skipped = discovery.FromMagnet(m)
		for _, s := range skipped {
			slog.Warn("magnet peer skipped (not an IP:port)", "peer", s)
		}
	default:
		return usagef("discover needs --torrent or --magnet")
	}
	if o.saveTorrent != "" && tor != nil {
		return usagef("--save-torrent goes with --magnet")
	}
	cfg.Duration = o.duration
	cfg.DHT = !o.noDHT
	o.lsdFlags.apply(&cfg)
	cfg.DenyPrivateTrackers = o.denyPrivate
	if o.bootstrap != "" {
		cfg.Bootstrap = strings.Split(o.bootstrap, ",")
	}
	cfg.Logger = slog.Default()
	peers := frompeers.Config{
		InfoHash: cfg.InfoHash, Torrent: tor, PEX: !o.noPEX && !cfg.Private,
		Watch:  watch.Options{PeerID: peerid.New(peerid.Prefix), Policy: policy, ClientName: peerid.OurName + " " + version, Private: cfg.Private},
		Logger: slog.Default(),
	}
	if o.peerListen != "" {
		ln, err := peerwire.Listen(o.peerListen)
		if err != nil {
			return fmt.Errorf("--peer-listen: %w", err)
		}
		defer ln.Close()
		peers.Listener = ln
		cfg.Port = uint16(ln.Addr().(*net.TCPAddr).Port)
	}
	nw, sock, err := o.transportFlag.network(nil, false)
	if err != nil {
		return err
	}
	if sock != nil {
		defer sock.Close()
	}
	peers.Watch.Network = nw
	if o.saveTorrent != "" {
		peers.OnMetadata = func(t *torrentmeta.Torrent) {
			if err := saveMetainfo(o.saveTorrent, t, m); err != nil {
				slog.Error("save torrent", "err", err)
			} else {
				slog.Info("metadata fetched and saved", "file", o.saveTorrent)
			}
		}
	}
	return discoverSwarm(ctx, g.stdout, cfg, peers, g.JSON)
}

// discoverSwarm runs the discoverer and the peer-side sources (PEX, metadata,
// incoming) for cfg.Duration and streams the addresses to w. The peer-side
// sources feed a book of their own, which outlives the discoverer's (the
// discoverer closes its book when its trackers and DHT are done, and may
// have none at all, as with a magnet that lists only peers).
func discoverSwarm(ctx context.Context, w io.Writer, cfg discovery.Config, peers frompeers.Config, asJSON bool) error {
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
		cfg.Duration = 0
	}
	d, err := discovery.New(cfg)
	if err != nil {
		return err
	}
	onMeta := peers.OnMetadata
	peers.OnMetadata = func(t *torrentmeta.Torrent) {
		if t.Private {
			d.MarkPrivate() // BEP 27, learnt from the metadata: trackers only from now on
		}
		if onMeta != nil {
			onMeta(t)
		}
	}
	book := addrbook.New(addrbook.Options{})
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		addrbook.Copy(ctx, book, d.Book())
	}()
	peers.Book = book
	if !cfg.Private { // BEP 27: private torrents learn nothing from PEX
		peers.AddPEX = book.AddPEX
	}
	peers.AddIncoming = func(a netip.AddrPort) { book.Add(a, addrbook.SourceIncoming, 0) }
	peerStats := make(chan frompeers.Stats, 1)
	go func() {
		st, err := frompeers.Run(ctx, peers)
		if err != nil {
			slog.Warn("peer sources", "err", err)
		}
		peerStats <- st
	}()
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		enc := json.NewEncoder(w)
		cur := book.Watch()
		n := 0
		for {
			e, err := cur.Next(context.Background())
			if err != nil {
				return // the book was closed and fully read
			}
			n++
			if asJSON {
				enc.Encode(e)
			} else {
				fmt.Fprintf(w, "%4d  %-47s %s\n", n, e.Addr, strings.Join(e.Sources(), ", "))
			}
		}
	}()
	runErr := d.Run(ctx)
	<-ctx.Done() // peer-side sources run for the whole duration
	ps := <-peerStats
	<-copied
	book.Close()
	<-printed
	s := d.Summary()
	s.Peers = book.Len()
	if asJSON {
		if err := json.NewEncoder(w).Encode(map[string]any{"summary": s, "from_peers": ps}); err != nil {
			return err
		}
	} else {
		printSummary(w, s)
		b, _ := json.Marshal(ps)
		fmt.Fprintf(w, "from peers %s\n", b)
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) && !errors.Is(runErr, context.DeadlineExceeded) && !errors.Is(runErr, discovery.ErrNoSource) {
		return runErr
	}
	if errors.Is(runErr, discovery.ErrNoSource) && book.Len() == 0 {
		return runErr
	}
	return nil
}

// saveMetainfo writes a .torrent for metadata fetched by magnet, with the
// magnet's trackers.
func saveMetainfo(path string, t *torrentmeta.Torrent, m *torrentmeta.Magnet) error {
	b, err := m.Metainfo(t, "swarmaudit "+version)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func printSummary(w io.Writer, s discovery.Summary) {
	fmt.Fprintf(w, "\n%d peers in %.0f s", s.Peers, s.Duration)
	for src, n := range s.BySource {
		fmt.Fprintf(w, "; %s: %d", src, n)
	}
	fmt.Fprintln(w)
	for _, tr := range s.Trackers {
		b, _ := json.Marshal(tr)
		fmt.Fprintf(w, "tracker %s\n", b)
	}
	if s.DHT != nil {
		b, _ := json.Marshal(s.DHT)
		fmt.Fprintf(w, "dht %s\n", b)
	}
	for _, e := range s.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}
