// Package labnet builds and tears down the accuracy lab's network: a bridge in
// the root network namespace and one network namespace per host, joined to the
// bridge by a veth pair, each with optional tc upload and download caps.
//
// The bridge holds the subnet's first address, so a process in the root
// namespace (the lab controller) reaches every host directly. Hosts have only
// their subnet's route: no default route, so nothing they send can leave the
// lab. IPv6 is off on every lab link. Everything is done with the ip and tc
// programs (iproute2) and needs root.
package labnet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultPrefix is the prefix of a zero Config.
const DefaultPrefix = "salab"

// DefaultSubnet is the lab subnet of a zero Config.
var DefaultSubnet = netip.MustParsePrefix("10.77.0.0/24")

// MTU of every lab link.
const MTU = 1500

const (
	// firstHostOffset: hosts get the subnet's .10, .11, ... unless told otherwise.
	firstHostOffset = 10
	// hostDev is the name of a host's interface inside its netns.
	hostDev = "lab0"
	// maxIfName is the kernel's limit on interface names (IFNAMSIZ-1).
	maxIfName = 15
	// cmdTimeout bounds every ip/tc invocation.
	cmdTimeout = 10 * time.Second
	// teardownTimeout bounds a whole Close or Cleanup.
	teardownTimeout = 60 * time.Second
)

// A prefix has no '-', so "<prefix>-" never matches another prefix's names.
var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

// Config says what Create builds.
type Config struct {
	// Prefix names everything: netns "<prefix>-<host>", bridge "<prefix>-br",
	// bridge-side veths "<prefix>-h<N>". 1-10 characters [a-z0-9], starting
	// with a letter. Default DefaultPrefix.
	Prefix string
	// Subnet is an IPv4 prefix between /16 and /28 that no route of the root
	// namespace overlaps; the bridge gets its first address. Default
	// DefaultSubnet.
	Subnet netip.Prefix
}

func (c Config) withDefaults() (Config, error) {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	if !prefixRE.MatchString(c.Prefix) {
		return c, fmt.Errorf("labnet: prefix %q: want 1-10 characters [a-z0-9] starting with a letter", c.Prefix)
	}
	if !c.Subnet.Addr().Is4() || c.Subnet.Bits() < 16 || c.Subnet.Bits() > 28 {
		return c, fmt.Errorf("labnet: subnet %s: want an IPv4 prefix between /16 and /28", c.Subnet)
	}
	if c.Subnet != c.Subnet.Masked() {
		return c, fmt.Errorf("labnet: subnet %s has host bits set (want %s)", c.Subnet, c.Subnet.Masked())
	}
	return c, nil
}

// Net is a built lab network. Its methods are safe for concurrent use.
type Net struct {
	Prefix   string
	Subnet   netip.Prefix
	Bridge   string     // bridge name in the root namespace
	BridgeIP netip.Addr // the subnet's first address, on the bridge

	mu      sync.Mutex
	hosts   []*Host
	nextIdx int        // number of the next bridge-side veth
	made    []resource // what Create and AddHost made, in order; Close deletes these
	closed  bool
}

// resource is one thing labnet made: a link in the root namespace or a netns.
type resource struct {
	netns bool
	name  string
}

// Create builds the bridge of a new lab. It fails, without changing anything,
// when a route of the root namespace overlaps the subnet or when names of the
// prefix exist (left by a crashed run: Cleanup removes them).
func Create(ctx context.Context, cfg Config) (*Net, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkFree(ctx, cfg); err != nil {
		return nil, err
	}
	n := &Net{
		Prefix:   cfg.Prefix,
		Subnet:   cfg.Subnet,
		Bridge:   cfg.Prefix + "-br",
		BridgeIP: cfg.Subnet.Addr().Next(),
		nextIdx:  1,
	}
	if err := n.makeBridge(ctx); err != nil {
		if cerr := n.Close(ctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil && strings.TrimSpace(string(b)) != "0" {
		slog.Warn("labnet: ip_forward is on in the root namespace: a lab host that adds a route via the bridge could reach other networks",
			"bridge", n.Bridge)
	}
	slog.Debug("labnet: bridge up", "bridge", n.Bridge, "ip", n.BridgeIP, "subnet", n.Subnet)
	return n, nil
}

func (n *Net) makeBridge(ctx context.Context) error {
	// STP off: ports forward as soon as they are up.
	if err := run(ctx, "ip", "link", "add", n.Bridge, "mtu", fmt.Sprint(MTU), "type", "bridge", "stp_state", "0"); err != nil {
		return err
	}
	n.made = append(n.made, resource{name: n.Bridge})
	if err := disableIPv6Link(n.Bridge); err != nil {
		return err
	}
	pfx := netip.PrefixFrom(n.BridgeIP, n.Subnet.Bits())
	if err := run(ctx, "ip", "addr", "add", pfx.String(), "dev", n.Bridge); err != nil {
		return err
	}
	return run(ctx, "ip", "link", "set", n.Bridge, "up")
}

// checkFree fails when the prefix's names exist or a route overlaps the subnet.
func checkFree(ctx context.Context, cfg Config) error {
	netns, links, err := leftovers(ctx, cfg.Prefix)
	if err != nil {
		return err
	}
	if len(netns)+len(links) > 0 {
		return fmt.Errorf("labnet: names of prefix %q exist (netns %v, links %v), left from an earlier run? labnet.Cleanup(ctx, %q) removes them",
			cfg.Prefix, netns, links, cfg.Prefix)
	}
	out, err := output(ctx, "ip", "-j", "-4", "route", "show", "table", "all")
	if err != nil {
		return err
	}
	var routes []struct {
		Dst, Dev, Type, Table string
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return fmt.Errorf("labnet: parse ip -j route: %w", err)
	}
	for _, r := range routes {
		if r.Dst == "default" {
			continue
		}
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			a, aerr := netip.ParseAddr(r.Dst)
			if aerr != nil {
				continue // not an IPv4 destination
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Overlaps(cfg.Subnet) {
			return fmt.Errorf("labnet: subnet %s is already routed in the root namespace (%s %s dev %s table %s); choose another Subnet, or Cleanup a crashed lab",
				cfg.Subnet, r.Type, r.Dst, r.Dev, r.Table)
		}
	}
	return nil
}

// leftovers lists the netns and root-namespace links named like the prefix's.
func leftovers(ctx context.Context, prefix string) (netns, links []string, err error) {
	all, err := listNetns(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, ns := range all {
		if strings.HasPrefix(ns, prefix+"-") {
			netns = append(netns, ns)
		}
	}
	ents, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil, nil, fmt.Errorf("labnet: list links: %w", err)
	}
	ours := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `-(br|h[0-9]+)$`)
	for _, e := range ents {
		if ours.MatchString(e.Name()) {
			links = append(links, e.Name())
		}
	}
	return netns, links, nil
}

func listNetns(ctx context.Context) ([]string, error) {
	out, err := output(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		// "name" or "name (id: N)"
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// Hosts returns the hosts added so far, in order.
func (n *Net) Hosts() []*Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.hosts)
}

// Close deletes exactly what Create and AddHost made: the bridge-side veths
// (which takes their peers), the bridge, then the netns. Deleting something
// already gone is no error, so Close can be called again, also after a failed
// Close. It runs even when ctx is done (the lab must not stay behind) and is
// bounded by one minute. Processes still inside a netns are not killed: they
// are logged, and keep a namespace that has only loopback.
func (n *Net) Close(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
	defer cancel()
	var left []resource
	var errs []error
	// links first (newest first: veths before the bridge), then the netns
	for _, wantNetns := range []bool{false, true} {
		for i := len(n.made) - 1; i >= 0; i-- {
			r := n.made[i]
			if r.netns != wantNetns {
				continue
			}
			if err := remove(ctx, r); err != nil {
				errs = append(errs, err)
				left = append(left, r)
			}
		}
	}
	slices.Reverse(left)
	n.made = left
	return errors.Join(errs...)
}

// Cleanup removes what a crashed run with that prefix left: the links named
// "<prefix>-br" and "<prefix>-h<N>" in the root namespace and every netns named
// "<prefix>-*". Nothing of another prefix is touched. Like Close, it runs even
// when ctx is done and is bounded by one minute.
func Cleanup(ctx context.Context, prefix string) error {
	if !prefixRE.MatchString(prefix) {
		return fmt.Errorf("labnet: cleanup: bad prefix %q", prefix)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
	defer cancel()
	netns, links, err := leftovers(ctx, prefix)
	if err != nil {
		return err
	}
	if len(netns)+len(links) > 0 {
		slog.Info("labnet: removing leftovers", "prefix", prefix, "netns", netns, "links", links)
	}
	// reverse name order: the veths ("<prefix>-h…") before the bridge ("<prefix>-br")
	slices.Sort(links)
	slices.Reverse(links)
	var errs []error
	for _, l := range links {
		if err := remove(ctx, resource{name: l}); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range netns {
		if err := remove(ctx, resource{netns: true, name: ns}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// remove deletes one resource; one already gone counts as removed.
func remove(ctx context.Context, r resource) error {
	if !r.netns {
		if !linkExists(r.name) {
			return nil
		}
		err := run(ctx, "ip", "link", "del", r.name)
		if err != nil && !linkExists(r.name) {
			return nil
		}
		return err
	}
	if pids, err := output(ctx, "ip", "netns", "pids", r.name); err == nil && len(bytes.TrimSpace(pids)) > 0 {
		slog.Warn("labnet: processes still in a netns being deleted; they keep a namespace with only loopback",
			"netns", r.name, "pids", strings.Fields(string(pids)))
	}
	err := run(ctx, "ip", "netns", "del", r.name)
	if err == nil {
		return nil
	}
	names, lerr := listNetns(ctx)
	if lerr == nil && !slices.Contains(names, r.name) {
		return nil
	}
	return err
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// disableIPv6Link turns IPv6 off on a link of the root namespace (no
// link-local address, no neighbour discovery on the lab). A kernel without
// IPv6 has nothing to turn off.
func disableIPv6Link(name string) error {
	p := "/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6"
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		return nil
	}
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("labnet: disable IPv6 on %s: %w", name, err)
	}
	return nil
}

// run runs one ip/tc command, bounded by cmdTimeout.
func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

// output runs one command, bounded by cmdTimeout, and returns its stdout; the
// error carries the command line and its stderr.
func output(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("labnet: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
