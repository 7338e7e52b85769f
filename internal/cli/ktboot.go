package cli

import (
	"fmt"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/ktserver"
)

// parseBootFlag parses the flags bounding a bootstrap from a KT master:
// -bsrate (records a second), -bsconn (connections), -bspage (keys a page).
// It reports whether a is one of them.
func (o *Options) parseBootFlag(a string, next func(string) (string, error)) (bool, error) {
	var dst *int
	switch a {
	case "-bsrate":
		dst = &o.BootRate
	case "-bsconn":
		dst = &o.BootConns
	case "-bspage":
		dst = &o.BootPage
	default:
		return false, nil
	}
	v, err := next(a)
	if err != nil {
		return true, err
	}
	n := ktproto.Atoix(v)
	if n < 0 || n > 1<<30 {
		return true, fmt.Errorf("%w: %s must be in 0..%d", ErrUsage, a, 1<<30)
	}
	*dst = int(n)
	return true, nil
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
