package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/cheat"
)

// helperArg is the hidden first argument that makes the lab binary (or its
// test binary) run one in-process cheat tool instead of the lab: the lab
// re-executes itself inside a host's netns with it, since package cheat runs
// in the calling process.
const helperArg = "__lab-helper"

// helperMaxLife bounds a helper's life even if the lab never stops it.
const helperMaxLife = 35 * time.Minute

// helperMain runs `__lab-helper cheat|proxy FLAGS` until SIGTERM/SIGINT or
// its -life ends, and returns the exit code. It prints one JSON line when it
// is ready ({"url": ...} for the proxy, {"addr": ...} for a cheater) and, for
// a cheater, one more with what it claimed when it stops.
func helperMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "lab helper: want cheat or proxy")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fs := flag.NewFlagSet("lab helper "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	life := fs.Duration("life", helperMaxLife, "exit after this long")
	ip := fs.String("ip", "", "address to listen and announce on")
	var err error
	switch args[0] {
	case "proxy":
		upstream := fs.String("upstream", "", "tracker announce URL")
		spec := fs.String("rewrite", "", "what to rewrite, cheat.Rewrite as JSON")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		var rw cheat.Rewrite
		if err := json.Unmarshal([]byte(*spec), &rw); err != nil {
			fmt.Fprintf(stderr, "lab helper: -rewrite %q: %v\n", *spec, err)
			return 2
		}
		err = runProxy(ctx, min(*life, helperMaxLife), *ip, *upstream, rw, stdout)
	case "cheat":
		kind := fs.String("kind", "", "cheat kind")
		announce := fs.String("announce", "", "tracker announce URL")
		ih := fs.String("infohash", "", "info hash, 40 hex digits")
		size := fs.Int64("size", 0, "torrent size, bytes")
		plen := fs.Int64("piece-length", 0, "piece length, bytes")
		rate := fs.Float64("rate", 0, "claimed upload, bytes/s")
		seed := fs.Uint64("seed", 1, "random seed (and peer_id)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		cfg := cheat.Config{Kind: cheat.Kind(*kind), Announce: *announce, Size: *size, PieceLength: *plen, Rate: *rate, IP: *ip, Seed: *seed}
		b, derr := hex.DecodeString(*ih)
		if derr != nil || len(b) != len(cfg.InfoHash) {
			fmt.Fprintf(stderr, "lab helper: -infohash %q: want 40 hex digits\n", *ih)
			return 2
		}
		copy(cfg.InfoHash[:], b)
		err = runCheater(ctx, min(*life, helperMaxLife), cfg, stdout)
	default:
		fmt.Fprintf(stderr, "lab helper: unknown tool %q\n", args[0])
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "lab helper %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func runProxy(ctx context.Context, life time.Duration, ip, upstream string, rw cheat.Rewrite, out io.Writer) error {
	if ip == "" || upstream == "" || !rw.Active() {
		return fmt.Errorf("want -ip, -upstream and a -rewrite that changes something")
	}
	p, err := cheat.StartRewriter(ip, upstream, rw)
	if err != nil {
		return fmt.Errorf("start proxy: %w", err)
	}
	defer p.Close()
	if err := json.NewEncoder(out).Encode(map[string]string{"url": p.URL}); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-time.After(life):
	}
	return nil
}

func runCheater(ctx context.Context, life time.Duration, cfg cheat.Config, out io.Writer) error {
	if cfg.IP == "" || cfg.Announce == "" {
		return fmt.Errorf("want -ip and -announce")
	}
	c, err := cheat.Start(ctx, cfg)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	if err := enc.Encode(map[string]string{"addr": c.Addr.String()}); err != nil {
		c.Close()
		return err
	}
	select {
	case <-ctx.Done():
	case <-time.After(life):
	}
	c.Close()
	return enc.Encode(map[string]int64{"claimed": c.Claimed()})
}

// isHelper reports whether the process was started as a lab helper.
func isHelper() bool { return len(os.Args) > 1 && os.Args[1] == helperArg }

// goBinary is the go command on PATH (the lab builds the auditor with it).
func goBinary() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}
