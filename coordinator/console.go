package coordinator

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/console"
)

// ConsoleConfig configures the web console (issue 6).
type ConsoleConfig struct {
	// Disabled turns the console off: /console is then the API's 404.
	Disabled bool
	// SessionLifetime is a console session's absolute lifetime, IdleTimeout
	// how long it may go unused; zero means the defaults (12h, 1h).
	SessionLifetime time.Duration
	IdleTimeout     time.Duration
	// Hosts are extra host names the console answers to (a reverse
	// proxy's name), besides the TLS certificate's names and IPs and the
	// listen address.
	Hosts []string
}

// validate reports the first invalid console setting.
func (c ConsoleConfig) validate() error {
	switch {
	case c.SessionLifetime < 0 || (c.SessionLifetime > 0 && (c.SessionLifetime < time.Minute || c.SessionLifetime > 30*24*time.Hour)):
		return fmt.Errorf("console session lifetime %s: want between 1m and 720h", c.SessionLifetime)
	case c.IdleTimeout < 0 || (c.IdleTimeout > 0 && c.IdleTimeout < time.Minute):
		return fmt.Errorf("console idle timeout %s: want at least 1m", c.IdleTimeout)
	}
	return nil
}

// withConsole returns the handler of the HTTPS listener: the API, with
// the console mounted at /console unless it is disabled. The console
// answers only to the certificate's names and IPs, the listen address and
// cfg.Console.Hosts.
func (c *Coordinator) withConsole(sans ca.SANs) (http.Handler, error) {
	cc := c.cfg.Console
	if cc.Disabled {
		return c.api, nil
	}
	if err := cc.validate(); err != nil {
		return nil, err
	}
	hosts := append([]string{}, sans.DNS...)
	for _, ip := range sans.IPs {
		hosts = append(hosts, ip.String())
	}
	if h, _, err := net.SplitHostPort(c.cfg.Listen); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	hosts = append(hosts, cc.Hosts...)
	con, err := console.New(console.Config{
		API:             c.api,
		Store:           c.store,
		Hosts:           hosts,
		BootstrapUser:   BootstrapUser,
		SessionLifetime: cc.SessionLifetime,
		IdleTimeout:     cc.IdleTimeout,
		Logger:          c.log.With("component", "console"),
	})
	if err != nil {
		return nil, err
	}
	c.console = con
	return console.Mount(c.api, con), nil
}
