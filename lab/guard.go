package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/labnet"
)

// lockPath serializes lab runs on this machine: two runs would share the
// prefix's names.
const lockPath = "/run/swarmaudit-lab.lock"

// lockLab takes the machine-wide lab lock, or fails at once naming the
// other run.
func lockLab() (unlock func(), err error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab lock %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(lockPath)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another lab run holds %s (pid %s): one lab at a time", lockPath, strings.TrimSpace(string(b)))
		}
		return nil, fmt.Errorf("lab lock %s: %w", lockPath, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintln(os.Getpid())), 0)
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// cleanLeftovers removes what a crashed lab run left (netns "salab-*", links
// "salab-br", "salab-hN"), saying so. With the lab lock held no other run
// owns them. It refuses when a process still runs inside one of those netns:
// that process belongs to someone, and is not the lab's to kill.
func cleanLeftovers(ctx context.Context, log *slog.Logger) error {
	netns, links, err := leftovers(ctx)
	if err != nil {
		return err
	}
	if len(netns)+len(links) == 0 {
		return nil
	}
	for _, ns := range netns {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
		cancel()
		if err == nil && len(strings.TrimSpace(string(out))) > 0 {
			return fmt.Errorf("leftovers of an earlier lab run: netns %s still has processes %v; stop them, then run again (the lab removes the rest itself)",
				ns, strings.Fields(string(out)))
		}
	}
	log.Warn("removing leftovers of an earlier lab run", "netns", netns, "links", links)
	if err := labnet.Cleanup(ctx, netPrefix); err != nil {
		return fmt.Errorf("remove leftovers of an earlier lab run: %w", err)
	}
	return nil
}

// leftovers lists the netns and root-namespace links of the lab's prefix.
func leftovers(ctx context.Context) (netns, links []string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("ip netns list: %w", err)
	}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], netPrefix+"-") {
			netns = append(netns, f[0])
		}
	}
	ents, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil, nil, fmt.Errorf("list links: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), netPrefix+"-") {
			links = append(links, e.Name())
		}
	}
	return netns, links, nil
}
