package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// TestDiscoverMagnetSim: from a magnet whose only source is one x.pe peer,
// discover fetches the metadata (saved with --save-torrent), watches the
// peer, and learns the addresses it gossips by PEX — unless the metadata
// says the torrent is private (BEP 27): then no PEX watch and no PEX
// address.
func TestDiscoverMagnetSim(t *testing.T) {
	for _, private := range []bool{false, true} {
		t.Run(fmt.Sprintf("private %v", private), func(t *testing.T) { testDiscoverMagnet(t, private) })
	}
}

func testDiscoverMagnet(t *testing.T, private bool) {
	newPayload := swarmsim.NewPayload
	if private {
		newPayload = swarmsim.NewPrivatePayload
	}
	payload, tor, err := newPayload("dsim.bin", 1<<20, 32<<10, 8)
	if err != nil {
		t.Fatal(err)
	}
	gossip := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.7:6001"), netip.MustParseAddrPort("127.0.0.7:6002")}
	p, err := swarmsim.StartPeer("127.0.0.1:0", swarmsim.PeerConfig{
		Payload: payload, Have: bitfield.Full(tor.NumPieces), InfoBytes: tor.InfoBytes, PEX: gossip, Encryption: swarmsim.EncRequired,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	magnet := fmt.Sprintf("magnet:?xt=urn:btih:%x&dn=dsim.bin&x.pe=%s", tor.InfoHash, p.Addr())
	saved := filepath.Join(t.TempDir(), "fetched.torrent")
	out, err := run(t, "discover", "--magnet", magnet, "--no-dht", "--duration", "3s", "--json", "--save-torrent", saved)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	sources := map[string]string{}
	var fromPeers struct {
		Watched int `json:"watched"`
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			Addr      string          `json:"addr"`
			Sources   []string        `json:"sources"`
			FromPeers json.RawMessage `json:"from_peers"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Addr != "" {
			sources[e.Addr] = strings.Join(e.Sources, ",")
		}
		if e.FromPeers != nil {
			json.Unmarshal(e.FromPeers, &fromPeers)
		}
	}
	if private {
		if len(sources) != 1 || fromPeers.Watched != 0 {
			t.Errorf("private torrent: PEX used (%d watched), addresses %v\n%s", fromPeers.Watched, sources, out)
		}
		return
	}
	if sources[p.Addr().String()] != "magnet" {
		t.Errorf("x.pe peer: %q\n%s", sources[p.Addr().String()], out)
	}
	for _, g := range gossip {
		if sources[g.String()] != "pex:"+p.Addr().String() {
			t.Errorf("%s: sources %q\n%s", g, sources[g.String()], out)
		}
	}
	got, err := torrentmeta.Load(saved)
	if err != nil {
		t.Fatalf("saved torrent: %v", err)
	}
	if got.InfoHash != tor.InfoHash {
		t.Fatalf("saved torrent has info hash %x", got.InfoHash)
	}
}
