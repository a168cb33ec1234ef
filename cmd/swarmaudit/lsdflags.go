package main

import (
	"github.com/spf13/pflag"

	"github.com/swarmaudit/swarmaudit/internal/discovery"
)

// lsdFlags turn on BEP 14 Local Service Discovery (audit, discover): one
// name and one meaning in every command.
type lsdFlags struct {
	lsd          bool
	lsdInterface string
}

func (fl *lsdFlags) register(f *pflag.FlagSet) {
	f.BoolVar(&fl.lsd, "lsd", false, "find peers on the local network by Local Service Discovery (BEP 14; multicast on the LAN, never for a private torrent)")
	f.StringVar(&fl.lsdInterface, "lsd-interface", "", "network interface for --lsd (default: the system's choice)")
}

// apply sets the discovery's LSD fields.
func (fl *lsdFlags) apply(c *discovery.Config) {
	c.LSD, c.LSDInterface = fl.lsd, fl.lsdInterface
}
