package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// TestAuditProgressOnATerminal runs `swarmaudit audit` under a pseudo-
// terminal and checks that its progress display redraws in place (cursor
// control sequences) and that the counts it shows change as peers are found
// and reached; with stderr not a terminal it writes plain lines instead.
func TestAuditProgressOnATerminal(t *testing.T) {
	dir := t.TempDir()
	bin := builtBinary(t)
	payload, tor, err := swarmsim.NewPayload("tty.bin", 1<<20, 64<<10, 51)
	if err != nil {
		t.Fatal(err)
	}
	var peers []*swarmsim.Peer
	for i := 0; i < 3; i++ {
		p, err := swarmsim.StartPeer("127.0.0.1:0", swarmsim.PeerConfig{Payload: payload, Have: bitfield.Full(tor.NumPieces)})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		peers = append(peers, p)
	}
	trackerAddr := fmt.Sprintf("127.0.0.1:%d", testclients.FreePort(t, "127.0.0.1"))
	mi, err := swarmsim.MetainfoFile(tor, "http://"+trackerAddr+"/announce")
	if err != nil {
		t.Fatal(err)
	}
	torrentPath := filepath.Join(dir, "tty.torrent")
	if err := os.WriteFile(torrentPath, mi, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"audit", "--torrent", torrentPath, "--db", testclients.StoreDB(t, filepath.Join(dir, "tty.db")), "--tracker-listen", trackerAddr,
		"--duration", "8s", "--no-dht", "--no-trackers", "--snapshot-interval", "1s", "--probe-bytes", "128KiB"}

	cmd := exec.Command(bin, args...)
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var mu sync.Mutex
	var screen bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	waitListening(t, trackerAddr)
	time.Sleep(1500 * time.Millisecond) // a few frames with nobody known yet
	for i, p := range peers {
		announceTo(t, "http://"+trackerAddr+"/announce", tor.InfoHash, fmt.Sprintf("-XX0000-ttypeer%05d", i), p.Addr().Port())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("audit under a pty: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	out := screen.String()
	mu.Unlock()
	if !regexp.MustCompile("\x1b\\[[0-9]*[AJK]").MatchString(out) {
		t.Fatalf("no in-place redraw (cursor control) in the terminal output:\n%q", out)
	}
	frames := map[string]bool{}
	for _, m := range regexp.MustCompile(`(\d+) peers discovered, (\d+) reached`).FindAllString(out, -1) {
		frames[m] = true
	}
	if !frames["0 peers discovered, 0 reached"] || !frames["3 peers discovered, 3 reached"] {
		t.Fatalf("the display did not move from 0 to 3 peers reached: %v", frames)
	}

	// Not a terminal: plain lines, no control sequences.
	var plain bytes.Buffer
	cmd = exec.Command(bin, append(args[:len(args):len(args)], "--db", testclients.StoreDB(t, filepath.Join(dir, "plain.db")))...)
	cmd.Stdout, cmd.Stderr = io.Discard, &plain
	if err := cmd.Run(); err != nil {
		t.Fatalf("audit without a terminal: %v\n%s", err, plain.String())
	}
	if bytes.Contains(plain.Bytes(), []byte("\x1b[")) || !bytes.Contains(plain.Bytes(), []byte("audit: ")) {
		t.Fatalf("plain output:\n%q", plain.String())
	}
}
