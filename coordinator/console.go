package coordinator

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
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
	// OIDCIssuer turns on console sign-in with that OpenID Connect
	// provider (an https URL); OIDCClientID is then required.
	// OIDCClientSecretFile holds the client's secret (read at start,
	// surrounding space trimmed, never logged). OIDCRedirectURL is the
	// callback registered at the provider; empty derives
	// https://<Host>/console/oidc/callback. The provider's HTTPS is
	// checked against the system roots plus Config.OIDCCAFile.
	OIDCIssuer, OIDCClientID, OIDCClientSecretFile, OIDCRedirectURL string
}

// validate reports the first invalid console setting.
func (c ConsoleConfig) validate() error {
	switch {
	case c.SessionLifetime < 0 || (c.SessionLifetime > 0 && (c.SessionLifetime < time.Minute || c.SessionLifetime > 30*24*time.Hour)):
		return fmt.Errorf("console session lifetime %s: want between 1m and 720h", c.SessionLifetime)
	case c.IdleTimeout < 0 || (c.IdleTimeout > 0 && c.IdleTimeout < time.Minute):
		return fmt.Errorf("console idle timeout %s: want at least 1m", c.IdleTimeout)
	case (c.OIDCIssuer == "") != (c.OIDCClientID == ""):
		return errors.New("console OIDC sign-in needs both an issuer and a client ID")
	case c.OIDCIssuer == "" && (c.OIDCClientSecretFile != "" || c.OIDCRedirectURL != ""):
		return errors.New("console OIDC client secret or redirect URL given without an issuer")
	}
	if c.OIDCIssuer != "" {
		if u, err := url.Parse(c.OIDCIssuer); err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("console OIDC issuer %q: want an https URL", c.OIDCIssuer)
		}
	}
	if c.OIDCRedirectURL != "" {
		if u, err := url.Parse(c.OIDCRedirectURL); err != nil || u.Scheme != "https" || u.Host == "" || u.Path != console.Prefix+"/oidc/callback" {
			return fmt.Errorf("console OIDC redirect URL %q: want https://HOST%s/oidc/callback", c.OIDCRedirectURL, console.Prefix)
		}
	}
	return nil
}

// consoleOIDC returns the console's OIDC settings, nil when off. The
// provider is reached with the system roots plus cfg.OIDCCAFile.
func consoleOIDC(cfg Config) (*console.OIDCConfig, error) {
	cc := cfg.Console
	if cc.OIDCIssuer == "" {
		return nil, nil
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if cfg.OIDCCAFile != "" {
		pem, err := os.ReadFile(cfg.OIDCCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading OIDC CA file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("OIDC CA file %s: no PEM certificate", cfg.OIDCCAFile)
		}
	}
	var secret string
	if cc.OIDCClientSecretFile != "" {
		b, err := os.ReadFile(cc.OIDCClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("reading console OIDC client secret: %w", err)
		}
		if secret = strings.TrimSpace(string(b)); secret == "" {
			return nil, fmt.Errorf("console OIDC client secret file %s is empty", cc.OIDCClientSecretFile)
		}
	}
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	return &console.OIDCConfig{Issuer: cc.OIDCIssuer, ClientID: cc.OIDCClientID, ClientSecret: secret,
		RedirectURL: cc.OIDCRedirectURL, HTTPClient: hc}, nil
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
	oidcCfg, err := consoleOIDC(c.cfg)
	if err != nil {
		return nil, err
	}
	con, err := console.New(console.Config{
		OIDC:            oidcCfg,
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
