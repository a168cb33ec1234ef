package labnet

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// A NAT host is a host behind a home router: its netns has a private
// address and a default route to a router netns, which is an ordinary lab
// host on the bridge and masquerades what the host sends out (nftables:
// source NAT that keeps the source port when it is free, and filtering of
// everything from outside but replies). Nobody on the lab can open a
// connection to the host; it can to them, and a hole it punches (a packet
// it sends to an address and port) lets that address and port answer.
const (
	natLANDev    = "lan0"
	natLANPrefix = "192.168.77.0/24" // the same behind every router: they are separate netns
)

var (
	natRouterLAN = netip.MustParseAddr("192.168.77.1")
	natHostLAN   = netip.MustParseAddr("192.168.77.2")
)

// AddNATHost makes a host named name behind a router netns named
// name+"-nat" (see AddHost for names and caps; caps apply to the router's
// link). The host's IP is its private address; Public is the router's
// address on the lab, which is what the lab sees it as. It needs nft.
func (n *Net) AddNATHost(ctx context.Context, name string, caps Caps) (*Host, error) {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil, fmt.Errorf("labnet: NAT host %s: %w", name, err)
	}
	if !hostNameRE.MatchString(name) || len(name)+len("-nat") > 32 {
		return nil, fmt.Errorf("labnet: NAT host name %q: want 1-28 characters [a-z0-9_-] starting with [a-z0-9]", name)
	}
	router, err := n.AddHost(ctx, name+"-nat", caps)
	if err != nil {
		return nil, err
	}
	h := &Host{Name: name, Netns: n.Prefix + "-" + name, Veth: router.Veth, Dev: hostDev, IP: natHostLAN, Public: router.IP, Caps: caps}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("labnet: add NAT host %s: network %s is closed", name, n.Prefix)
	}
	if err := n.buildNAT(ctx, router, h); err != nil {
		return nil, fmt.Errorf("labnet: add NAT host %s: %w", name, err)
	}
	n.hosts = append(n.hosts, h)
	return h, nil
}

func (n *Net) buildNAT(ctx context.Context, router, h *Host) error {
	if err := run(ctx, "ip", "netns", "add", h.Netns); err != nil {
		return err
	}
	n.made = append(n.made, resource{netns: true, name: h.Netns})
	if err := run(ctx, "ip", "netns", "exec", h.Netns, "sysctl", "-q", "-w",
		"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
		return err
	}
	if err := run(ctx, "ip", "-n", h.Netns, "link", "set", "lo", "up"); err != nil {
		return err
	}
	// The LAN: a veth from the router's netns into the host's (both ends
	// live in netns of the lab, so deleting those removes it).
	mtu := strconv.Itoa(MTU)
	if err := run(ctx, "ip", "-n", router.Netns, "link", "add", natLANDev, "mtu", mtu, "gso_max_segs", "1", "type", "veth",
		"peer", "name", h.Dev, "mtu", mtu, "gso_max_segs", "1", "netns", h.Netns); err != nil {
		return err
	}
	bits := netip.MustParsePrefix(natLANPrefix).Bits()
	for _, step := range [][]string{
		{"ip", "-n", router.Netns, "addr", "add", netip.PrefixFrom(natRouterLAN, bits).String(), "dev", natLANDev},
		{"ip", "-n", router.Netns, "link", "set", natLANDev, "up"},
		{"ip", "-n", h.Netns, "addr", "add", netip.PrefixFrom(natHostLAN, bits).String(), "dev", h.Dev},
		{"ip", "-n", h.Netns, "link", "set", h.Dev, "up"},
		{"ip", "-n", h.Netns, "route", "add", "default", "via", natRouterLAN.String()},
		{"ip", "netns", "exec", router.Netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
		{"ip", "netns", "exec", router.Netns, "nft", "-f", "-"},
	} {
		cmd := exec.CommandContext(ctx, step[0], step[1:]...)
		if step[len(step)-1] == "-" {
			cmd.Stdin = strings.NewReader(natRules(router.Dev))
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %w: %s", step, err, out)
		}
	}
	return nil
}

// natRules masquerade what leaves by wan and forward from outside only
// replies: a port-restricted NAT, the common home router.
func natRules(wan string) string {
	return fmt.Sprintf(`table ip labnat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname %q masquerade
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname %q accept
	}
}
`, wan, natLANDev)
}
