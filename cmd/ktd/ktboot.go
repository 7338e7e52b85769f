package main

import (
	"fmt"

	"github.com/ktdproject/ktd/ktserver"
)

// bootCount is a flag bounding a bootstrap from a KT master: a count in
// KT's atoix form, 0 to 2^30.
func bootCount(name, help string, field func(*Options) *int) option {
	return option{name, "num", help, func(o *Options, v string) error {
		n, err := parseCount(v)
		if err != nil {
			return err
		}
		if n < 0 || n > 1<<30 {
			return fmt.Errorf("must be in 0..%d", 1<<30)
		}
		*field(o) = int(n)
		return nil
	}}
}

// applyBoot sets the bounds of a bootstrap from a KT master.
func applyBoot(o *Options, cfg *ktserver.Config) {
	cfg.ReplKTBoot.Rate = o.BootRate
	cfg.ReplKTBoot.Conns = o.BootConns
	cfg.ReplKTBoot.Page = o.BootPage
	if o.BootPage > 0 {
		cfg.ReplKTBoot.Batch = min(1000, o.BootPage)
	}
}
