package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmaudit/swarmaudit/internal/discover"
	"github.com/swarmaudit/swarmaudit/internal/torrentmeta"
)

func newDiscoverCmd() *cobra.Command {
	var (
		torrentPath, magnet, bootstrap string
		duration                       time.Duration
		noDHT, asJSON, denyPrivate     bool
	)
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
private addresses (off by default: private trackers on LANs exist).`,
		Example: `  swarmaudit discover --torrent debian.torrent --duration 30s --json
  swarmaudit discover --magnet 'magnet:?xt=urn:btih:...&tr=udp://tracker.example:6969' --no-dht`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var cfg discover.Config
			switch {
			case torrentPath != "" && magnet != "":
				return errors.New("give --torrent or --magnet, not both")
			case torrentPath != "":
				t, err := torrentmeta.Load(torrentPath)
				if err != nil {
					return err
				}
				cfg = discover.FromTorrent(t)
			case magnet != "":
				m, err := torrentmeta.ParseMagnet(magnet)
				if err != nil {
					return err
				}
				var skipped []string
				cfg, skipped = discover.FromMagnet(m)
				for _, s := range skipped {
					slog.Warn("magnet peer skipped (not an IP:port)", "peer", s)
				}
			default:
				return errors.New("discover needs --torrent or --magnet")
			}
			cfg.Duration = duration
			cfg.DHT = !noDHT
			cfg.DenyPrivateTrackers = denyPrivate
			if bootstrap != "" {
				cfg.Bootstrap = strings.Split(bootstrap, ",")
			}
			cfg.Logger = slog.Default()
			return runDiscover(cmd.Context(), cmd.OutOrStdout(), cfg, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&torrentPath, "torrent", "", "the .torrent file")
	f.StringVar(&magnet, "magnet", "", "a magnet URI (btih, hex or base32)")
	f.DurationVar(&duration, "duration", 60*time.Second, "how long to look for peers")
	f.BoolVar(&noDHT, "no-dht", false, "do not search the DHT")
	f.StringVar(&bootstrap, "dht-bootstrap", "", "DHT bootstrap nodes HOST:PORT,... (default: the well-known public routers)")
	f.BoolVar(&asJSON, "json", false, `print one JSON object per peer, then {"summary": ...}`)
	f.BoolVar(&denyPrivate, "deny-private-trackers", false, "refuse trackers whose host resolves to a loopback or private address")
	return cmd
}

// runDiscover runs the discoverer and streams the address book to w.
func runDiscover(ctx context.Context, w io.Writer, cfg discover.Config, asJSON bool) error {
	d, err := discover.New(cfg)
	if err != nil {
		return err
	}
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		enc := json.NewEncoder(w)
		cur := d.Book().Watch()
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
	d.Book().Close()
	<-printed
	s := d.Summary()
	if asJSON {
		if err := json.NewEncoder(w).Encode(map[string]any{"summary": s}); err != nil {
			return err
		}
	} else {
		printSummary(w, s)
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) && !errors.Is(runErr, context.DeadlineExceeded) {
		return runErr
	}
	return nil
}

func printSummary(w io.Writer, s discover.Summary) {
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
