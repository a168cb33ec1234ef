package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// The crash test re-executes the test binary as a writer child; these
// variables tell it so.
const (
	crashEnvPath  = "SWARMAUDIT_STORE_CRASH_DB"
	crashEnvRound = "SWARMAUDIT_STORE_CRASH_ROUND"
	crashPieces   = 200
	crashPeers    = 20
	crashMaxIters = 100_000
	crashMaxTime  = 30 * time.Second
)

func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnvPath); path != "" {
		round, _ := strconv.Atoi(os.Getenv(crashEnvRound))
		if err := crashChild(path, round); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashPeer, crashAt and crashBitfield derive everything a child writes from
// its sequence number, so the parent can check content, not just presence.
func crashPeer(seq int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 2, byte(seq % crashPeers)}), 6881)
}

func crashAt(seq int) time.Time { return t0.Add(time.Duration(seq) * time.Millisecond) }

// crashBitfield grows with seq for a peer (so most snapshots are deltas) and
// now and then shrinks (forcing a full snapshot).
func crashBitfield(seq int) bitfield.Bitfield {
	bf := bitfield.New(crashPieces)
	k := (seq / crashPeers) % (crashPieces + 1)
	for i := 0; i < k; i++ {
		bf.Set((i * 37) % crashPieces)
	}
	return bf
}

// crashChild writes observations in a loop and prints, after each commit
// returns, what is now durable: "S seq" (snapshot), "H seq" (every HAVE up
// to seq, after Flush), "A seq" (announce).
func crashChild(path string, round int) error {
	ctx, cancel := context.WithTimeout(context.Background(), crashMaxTime)
	defer cancel()
	s, err := Open(ctx, path, WithHaveBatch(8, 20*time.Millisecond), WithFullSnapshotEvery(16))
	if err != nil {
		return err
	}
	sw, err := s.EnsureSwarm(ctx, SwarmInfo{InfoHash: ih(7), NumPieces: crashPieces})
	if err != nil {
		return err
	}
	out := os.Stdout
	for i := 0; i < crashMaxIters && ctx.Err() == nil; i++ {
		seq := round*crashMaxIters + i
		p, at := crashPeer(seq), crashAt(seq)
		if err := s.AddSnapshot(ctx, sw, p, at, crashBitfield(seq)); err != nil {
			return err
		}
		fmt.Fprintf(out, "S %d\n", seq)
		if err := s.AddHave(ctx, sw, p, at, seq%crashPieces); err != nil {
			return err
		}
		if i%5 == 4 {
			if err := s.Flush(ctx); err != nil {
				return err
			}
			fmt.Fprintf(out, "H %d\n", seq)
		}
		if err := s.RecordAnnounce(reported.Announce{At: at, InfoHash: ih(7), IP: p.Addr(), Port: p.Port(), Uploaded: int64(seq)}); err != nil {
			return err
		}
		fmt.Fprintf(out, "A %d\n", seq)
	}
	return s.Close()
}

// TestCrashSafety SIGKILLs a writing child at random moments, several rounds
// on the same database, and checks after each that everything the child
// reported committed is there and intact, and that the file passes
// integrity_check.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the binary several times; skipped with -short")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	committed := map[string][]int{}
	const rounds = 5
	for round := 0; round < rounds; round++ {
		killAfter := 10 + rng.IntN(1500) // lines
		lines, killed, err := runCrashChild(t, path, round, killAfter)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		t.Logf("round %d: child reported %d commits, killed=%v (after %d lines)", round, len(lines), killed, killAfter)
		for _, l := range lines {
			kind, num, ok := strings.Cut(l, " ")
			n, err := strconv.Atoi(num)
			if !ok || err != nil {
				t.Fatalf("round %d: bad child line %q", round, l)
			}
			committed[kind] = append(committed[kind], n)
		}
		verifyCrashDB(t, path, committed)
	}
}

func runCrashChild(t *testing.T, path string, round, killAfter int) (lines []string, killed bool, err error) {
	ctx, cancel := context.WithTimeout(testCtx(t), crashMaxTime+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnvPath+"="+path, crashEnvRound+"="+strconv.Itoa(round))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, false, err
	}
	if err := cmd.Start(); err != nil {
		return nil, false, err
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) == killAfter {
			// The child keeps writing until the signal lands: mid-transaction,
			// mid-flush, mid-print.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				return lines, false, fmt.Errorf("kill: %w", err)
			}
			killed = true
		}
	}
	// Lines already in the pipe were printed after a commit returned: they
	// count too, so read to EOF before judging.
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return lines, killed, fmt.Errorf("read child: %w", err)
	}
	werr := cmd.Wait()
	if !killed && werr != nil {
		return lines, killed, fmt.Errorf("child failed: %w; stderr: %s", werr, stderr.String())
	}
	if killed {
		var ee *exec.ExitError
		ws, ok := syscall.WaitStatus(0), false
		if errors.As(werr, &ee) {
			ws, ok = ee.Sys().(syscall.WaitStatus)
		}
		if !ok || ws.Signal() != syscall.SIGKILL {
			return lines, killed, fmt.Errorf("child did not die by SIGKILL: %v; stderr: %s", werr, stderr.String())
		}
	}
	return lines, killed, nil
}

func verifyCrashDB(t *testing.T, path string, committed map[string][]int) {
	t.Helper()
	ctx := testCtx(t)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("after kill: %v", err)
	}
	sw, err := s.LookupSwarm(ctx, ih(7))
	if err != nil {
		if len(committed["S"]) == 0 {
			return
		}
		t.Fatal(err)
	}
	snaps, err := s.Snapshots(ctx, sw.ID)
	if err != nil {
		t.Fatalf("reconstruct snapshots after kill: %v", err)
	}
	byTime := map[netip.AddrPort]map[time.Time]bitfield.Bitfield{}
	for p, ss := range snaps {
		byTime[p] = map[time.Time]bitfield.Bitfield{}
		for _, tb := range ss {
			byTime[p][tb.At] = tb.Bitfield
		}
	}
	for _, seq := range committed["S"] {
		got, ok := byTime[crashPeer(seq)][crashAt(seq)]
		if !ok {
			t.Fatalf("committed snapshot %d lost", seq)
		}
		if !got.Equal(crashBitfield(seq)) {
			t.Fatalf("committed snapshot %d reconstructs wrong: %v", seq, got.Indices())
		}
	}
	haves, err := s.Haves(ctx, sw.ID)
	if err != nil {
		t.Fatal(err)
	}
	haveAt := map[string][]time.Time{}
	for p, hs := range haves {
		for _, h := range hs {
			k := fmt.Sprint(p, h.Piece)
			haveAt[k] = append(haveAt[k], h.At)
		}
	}
	// "H seq" vouches for every HAVE of its round up to seq, at its time to
	// the store's precision (rounded down to 10 ms within its batch).
	for _, upTo := range committed["H"] {
		round := upTo / crashMaxIters
		for seq := round * crashMaxIters; seq <= upTo; seq++ {
			want := crashAt(seq)
			if !slices.ContainsFunc(haveAt[fmt.Sprint(crashPeer(seq), seq%crashPieces)], func(at time.Time) bool {
				return !at.After(want) && want.Sub(at) < haveTimeUnitUS*time.Microsecond
			}) {
				t.Fatalf("HAVE %d lost (flush up to %d was reported committed)", seq, upTo)
			}
		}
	}
	anns, err := s.Announces(ctx, ih(7), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	annSet := map[int64]bool{}
	for _, a := range anns {
		annSet[a.Uploaded] = true
	}
	for _, seq := range committed["A"] {
		if !annSet[int64(seq)] {
			t.Fatalf("committed announce %d lost", seq)
		}
	}
}
