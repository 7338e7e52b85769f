// Package packaging holds what `make install` puts on a machine besides the ktd
// binary: a hardened systemd unit (ktd.service), its defaults (ktd.default, installed
// as /etc/default/ktd) and a logrotate rule (ktd.logrotate). Its tests run
// `make install` into a scratch DESTDIR and check what lands there.
package packaging
