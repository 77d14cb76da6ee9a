package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/latchnet/latch/coordinator"
	"github.com/tailscale/hujson"
)

// serveOptions is everything `serve` was told.
type serveOptions struct {
	cfg   coordinator.Config
	level slog.Level
}

// nameList is a repeatable flag whose values may also be comma lists.
type nameList []string

func (l *nameList) String() string { return strings.Join(*l, ",") }

func (l *nameList) Set(v string) error {
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			*l = append(*l, n)
		}
	}
	return nil
}

// serveFlags defines the flags of `serve`, with the defaults shown in help.
func serveFlags() (*flag.FlagSet, *flagValues) {
	d := coordinator.DefaultConfig()
	v := &flagValues{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by the caller
	fs.Usage = func() {}
	fs.StringVar(&v.config, "config", "", "read options from a JSON/HuJSON `FILE` (same names as the flags; flags win)")
	fs.StringVar(&v.listen, "listen", d.Listen, "`ADDR` (host:port) to serve HTTPS on")
	fs.StringVar(&v.dataDir, "data-dir", d.DataDir, "`DIR` for the database, CA, TLS certificate and bootstrap token")
	fs.StringVar(&v.db, "db", "", "database `URL`: a path or sqlite:PATH (default <data-dir>/latch.db); postgres:// is not supported yet")
	fs.Var(&v.serverNames, "server-name", "extra DNS `NAME` or IP for the TLS certificate (repeatable or comma list)")
	fs.StringVar(&v.trustDomain, "trust-domain", d.TrustDomain, "SPIFFE trust `DOMAIN`, fixed at first start")
	fs.DurationVar(&v.nodeCertLifetime, "node-cert-lifetime", d.NodeCertLifetime, "validity of node certificates (agents renew at half-life)")
	fs.DurationVar(&v.keepalive, "keepalive", d.Keepalive, "longest silence on a node's netmap stream")
	fs.DurationVar(&v.ephemeralGrace, "ephemeral-grace", d.EphemeralGrace, "how long an ephemeral node may stay disconnected before it is deleted")
	fs.DurationVar(&v.nodeKeyExpiry, "node-key-expiry", d.NodeKeyExpiry, "key lifetime of nodes whose enrollment key sets none; an expired node loses every peer")
	fs.DurationVar(&v.flowRetention, "flow-retention", d.FlowRetention, "how long flow log records (agents' flow summaries) are kept")
	fs.IntVar(&v.flowMaxRecords, "flow-max-records", d.FlowMaxRecords, "most flow log records kept; beyond it the oldest are deleted")
	for i, r := range rateFlags {
		l := r.field(&d)
		fs.Var(&rateValue{r: &v.rates[i]}, r.name+"-rate-"+r.per, "average `RATE` of "+r.help+": N/s, N/m or N/h, or off (default "+formatRate(*l)+")")
		fs.Var(&burstValue{n: &v.bursts[i]}, r.name+"-burst-"+r.per, "`N` "+r.help+" allowed at once (default "+strconv.Itoa(l.Burst)+")")
	}
	fs.StringVar(&v.logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn or error")
	fs.StringVar(&v.oidcCAFile, "oidc-ca-file", "", "PEM `FILE` of CA certificates trusted for OIDC issuers' HTTPS (workload identity), besides the system roots")
	// Web console (issue 6).
	fs.BoolVar(&v.console, "console", true, "serve the web console at /console (--console=false turns it off)")
	fs.DurationVar(&v.consoleLifetime, "console-session-lifetime", 12*time.Hour, "absolute lifetime of a web console session")
	fs.DurationVar(&v.consoleIdle, "console-idle-timeout", time.Hour, "a web console session unused this long ends")
	fs.StringVar(&v.consoleOIDCIssuer, "console-oidc-issuer", "", "OpenID Connect issuer `URL` (https) for web console sign-in; accounts are bound to its subjects on the Users page")
	fs.StringVar(&v.consoleOIDCClientID, "console-oidc-client-id", "", "the console's client `ID` at the OIDC issuer")
	fs.StringVar(&v.consoleOIDCSecretFile, "console-oidc-client-secret-file", "", "`FILE` holding the console's OIDC client secret (for confidential clients)")
	fs.StringVar(&v.consoleOIDCRedirect, "console-oidc-redirect-url", "", "callback `URL` registered at the issuer (default https://HOST/console/oidc/callback, HOST as the browser sent it)")
	fs.Var(&v.consoleHosts, "console-host", "extra host `NAME` the web console answers to (a reverse proxy's), besides the TLS certificate's names and IPs (repeatable or comma list)")
	return fs, v
}

type flagValues struct {
	config, listen, dataDir, db, trustDomain, logLevel string
	serverNames                                        nameList
	nodeCertLifetime, keepalive, ephemeralGrace        time.Duration
	nodeKeyExpiry                                      time.Duration
	flowRetention                                      time.Duration
	flowMaxRecords                                     int
	rates                                              [3]float64 // by rateFlags index
	oidcCAFile                                         string
	bursts                                             [3]int
	console                                            bool // web console (issue 6)
	consoleLifetime, consoleIdle                       time.Duration
	consoleHosts                                       nameList
	consoleOIDCIssuer, consoleOIDCClientID             string
	consoleOIDCSecretFile, consoleOIDCRedirect         string
}

// rateFlags are the rate limit flag pairs: --NAME-rate-PER and
// --NAME-burst-PER, with the same names in the config file.
var rateFlags = [3]struct {
	name, per, help string
	field           func(*coordinator.Config) *coordinator.RateLimit
}{
	{"enroll", "per-ip", "enrollment attempts per source IP", func(c *coordinator.Config) *coordinator.RateLimit { return &c.EnrollPerIP }},
	{"enroll", "per-key", "enrollment attempts per enrollment key", func(c *coordinator.Config) *coordinator.RateLimit { return &c.EnrollPerKey }},
	{"auth-failure", "per-ip", "failed API token authentications per source IP", func(c *coordinator.Config) *coordinator.RateLimit { return &c.AuthFailuresPerIP }},
}

// rateValue is a --*-rate-* flag.
type rateValue struct{ r *float64 }

func (v *rateValue) String() string { return "" }

func (v *rateValue) Set(s string) error {
	r, err := parseRate(s)
	if err != nil {
		return err
	}
	*v.r = r
	return nil
}

// burstValue is a --*-burst-* flag.
type burstValue struct{ n *int }

func (v *burstValue) String() string { return "" }

func (v *burstValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > coordinator.MaxBurst {
		return fmt.Errorf("want a whole number between 1 and %d", coordinator.MaxBurst)
	}
	*v.n = n
	return nil
}

// parseRate reads "N/s", "N/m", "N/h" (N may have a fraction) or "off"
// into events per second; "off" and "0" give 0, which turns the limit off.
func parseRate(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "0" {
		return 0, nil
	}
	num, unit, ok := strings.Cut(s, "/")
	per := map[string]float64{"s": 1, "m": 60, "h": 3600}[unit]
	n, err := strconv.ParseFloat(num, 64)
	switch {
	case !ok || per == 0 || err != nil || math.IsNaN(n) || math.IsInf(n, 0):
		return 0, fmt.Errorf("rate %q: want N/s, N/m, N/h or off", s)
	case n <= 0:
		return 0, fmt.Errorf("rate %q: want a positive rate, or off", s)
	case n/per > coordinator.MaxRate:
		return 0, fmt.Errorf("rate %q: want at most %g/s", s, float64(coordinator.MaxRate))
	}
	return n / per, nil
}

// formatRate shows a limit's rate as the flags take it.
func formatRate(l coordinator.RateLimit) string {
	if l.Off() {
		return "off"
	}
	return strconv.FormatFloat(l.Rate, 'g', -1, 64) + "/s"
}

// parseServe turns serve's arguments into options: defaults, then the
// config file, then the flags given on the command line.
func parseServe(args []string) (serveOptions, error) {
	fs, v := serveFlags()
	if err := fs.Parse(args); err != nil {
		return serveOptions{}, err
	}
	if fs.NArg() > 0 {
		return serveOptions{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	opts := serveOptions{cfg: coordinator.DefaultConfig()}
	level := "info"
	if v.config != "" {
		if err := applyFile(&opts.cfg, &level, v.config); err != nil {
			return serveOptions{}, err
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			opts.cfg.Listen = v.listen
		case "data-dir":
			opts.cfg.DataDir = v.dataDir
		case "db":
			opts.cfg.DB = v.db
		case "server-name":
			opts.cfg.ServerNames = v.serverNames
		case "trust-domain":
			opts.cfg.TrustDomain = v.trustDomain
		case "node-cert-lifetime":
			opts.cfg.NodeCertLifetime = v.nodeCertLifetime
		case "keepalive":
			opts.cfg.Keepalive = v.keepalive
		case "ephemeral-grace":
			opts.cfg.EphemeralGrace = v.ephemeralGrace
		case "node-key-expiry":
			opts.cfg.NodeKeyExpiry = v.nodeKeyExpiry
		case "flow-retention":
			opts.cfg.FlowRetention = v.flowRetention
		case "flow-max-records":
			opts.cfg.FlowMaxRecords = v.flowMaxRecords
		case "log-level":
			level = v.logLevel
		case "oidc-ca-file":
			opts.cfg.OIDCCAFile = v.oidcCAFile
		case "console":
			opts.cfg.Console.Disabled = !v.console
		case "console-session-lifetime":
			opts.cfg.Console.SessionLifetime = v.consoleLifetime
		case "console-idle-timeout":
			opts.cfg.Console.IdleTimeout = v.consoleIdle
		case "console-host":
			opts.cfg.Console.Hosts = v.consoleHosts
		case "console-oidc-issuer":
			opts.cfg.Console.OIDCIssuer = v.consoleOIDCIssuer
		case "console-oidc-client-id":
			opts.cfg.Console.OIDCClientID = v.consoleOIDCClientID
		case "console-oidc-client-secret-file":
			opts.cfg.Console.OIDCClientSecretFile = v.consoleOIDCSecretFile
		case "console-oidc-redirect-url":
			opts.cfg.Console.OIDCRedirectURL = v.consoleOIDCRedirect
		}
		for i, r := range rateFlags {
			switch f.Name {
			case r.name + "-rate-" + r.per:
				r.field(&opts.cfg).Rate = v.rates[i]
			case r.name + "-burst-" + r.per:
				r.field(&opts.cfg).Burst = v.bursts[i]
			}
		}
	})
	if err := opts.level.UnmarshalText([]byte(level)); err != nil {
		return serveOptions{}, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	if err := opts.cfg.Validate(); err != nil {
		return serveOptions{}, err
	}
	return opts, nil
}

// fileConfig is the config file's shape: the flags' names, all optional.
type fileConfig struct {
	Listen           *string         `json:"listen"`
	DataDir          *string         `json:"data-dir"`
	DB               *string         `json:"db"`
	ServerName       json.RawMessage `json:"server-name"` // a string (comma list) or a list of strings
	TrustDomain      *string         `json:"trust-domain"`
	NodeCertLifetime *string         `json:"node-cert-lifetime"`
	Keepalive        *string         `json:"keepalive"`
	EphemeralGrace   *string         `json:"ephemeral-grace"`
	NodeKeyExpiry    *string         `json:"node-key-expiry"`
	FlowRetention    *string         `json:"flow-retention"`
	FlowMaxRecords   *int            `json:"flow-max-records"`
	LogLevel         *string         `json:"log-level"`
	OIDCCAFile       *string         `json:"oidc-ca-file"`
	// Rate limits: a rate is a string like "10/s" or "off"; a burst a number.
	EnrollRatePerIP       *string `json:"enroll-rate-per-ip"`
	EnrollBurstPerIP      *int    `json:"enroll-burst-per-ip"`
	EnrollRatePerKey      *string `json:"enroll-rate-per-key"`
	EnrollBurstPerKey     *int    `json:"enroll-burst-per-key"`
	AuthFailureRatePerIP  *string `json:"auth-failure-rate-per-ip"`
	AuthFailureBurstPerIP *int    `json:"auth-failure-burst-per-ip"`
	// Web console (issue 6).
	Console                *bool           `json:"console"`
	ConsoleSessionLifetime *string         `json:"console-session-lifetime"`
	ConsoleIdleTimeout     *string         `json:"console-idle-timeout"`
	ConsoleHost            json.RawMessage `json:"console-host"` // like server-name
	ConsoleOIDCIssuer      *string         `json:"console-oidc-issuer"`
	ConsoleOIDCClientID    *string         `json:"console-oidc-client-id"`
	ConsoleOIDCSecretFile  *string         `json:"console-oidc-client-secret-file"`
	ConsoleOIDCRedirectURL *string         `json:"console-oidc-redirect-url"`
}

// applyFile applies the options in a JSON or HuJSON file to cfg.
func applyFile(cfg *coordinator.Config, level *string, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	std, err := hujson.Standardize(raw)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	var fc fileConfig
	dec := json.NewDecoder(bytes.NewReader(std))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		return fmt.Errorf("config %s: %s", path, strings.TrimPrefix(err.Error(), "json: "))
	}
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&cfg.Listen, fc.Listen)
	set(&cfg.DataDir, fc.DataDir)
	set(&cfg.DB, fc.DB)
	set(&cfg.TrustDomain, fc.TrustDomain)
	set(level, fc.LogLevel)
	set(&cfg.OIDCCAFile, fc.OIDCCAFile)
	set(&cfg.Console.OIDCIssuer, fc.ConsoleOIDCIssuer)
	set(&cfg.Console.OIDCClientID, fc.ConsoleOIDCClientID)
	set(&cfg.Console.OIDCClientSecretFile, fc.ConsoleOIDCSecretFile)
	set(&cfg.Console.OIDCRedirectURL, fc.ConsoleOIDCRedirectURL)
	if fc.FlowMaxRecords != nil {
		cfg.FlowMaxRecords = *fc.FlowMaxRecords
	}
	if fc.Console != nil {
		cfg.Console.Disabled = !*fc.Console
	}
	if len(fc.ConsoleHost) > 0 {
		var one string
		var many []string
		var names nameList
		switch {
		case json.Unmarshal(fc.ConsoleHost, &one) == nil:
			names.Set(one)
		case json.Unmarshal(fc.ConsoleHost, &many) == nil:
			for _, n := range many {
				names.Set(n)
			}
		default:
			return fmt.Errorf("config %s: console-host: want a string or a list of strings", path)
		}
		cfg.Console.Hosts = names
	}
	for name, pair := range map[string]struct {
		dst *time.Duration
		src *string
	}{
		"node-cert-lifetime":       {&cfg.NodeCertLifetime, fc.NodeCertLifetime},
		"keepalive":                {&cfg.Keepalive, fc.Keepalive},
		"ephemeral-grace":          {&cfg.EphemeralGrace, fc.EphemeralGrace},
		"node-key-expiry":          {&cfg.NodeKeyExpiry, fc.NodeKeyExpiry},
		"flow-retention":           {&cfg.FlowRetention, fc.FlowRetention},
		"console-session-lifetime": {&cfg.Console.SessionLifetime, fc.ConsoleSessionLifetime},
		"console-idle-timeout":     {&cfg.Console.IdleTimeout, fc.ConsoleIdleTimeout},
	} {
		if pair.src == nil {
			continue
		}
		d, err := time.ParseDuration(*pair.src)
		if err != nil {
			return fmt.Errorf("config %s: %s: want a duration like \"1h\" or \"15s\"", path, name)
		}
		*pair.dst = d
	}
	for _, r := range []struct {
		name  string
		rate  *string
		burst *int
		dst   *coordinator.RateLimit
	}{
		{"enroll-%s-per-ip", fc.EnrollRatePerIP, fc.EnrollBurstPerIP, &cfg.EnrollPerIP},
		{"enroll-%s-per-key", fc.EnrollRatePerKey, fc.EnrollBurstPerKey, &cfg.EnrollPerKey},
		{"auth-failure-%s-per-ip", fc.AuthFailureRatePerIP, fc.AuthFailureBurstPerIP, &cfg.AuthFailuresPerIP},
	} {
		if r.rate != nil {
			rate, err := parseRate(*r.rate)
			if err != nil {
				return fmt.Errorf("config %s: %s: %w", path, fmt.Sprintf(r.name, "rate"), err)
			}
			r.dst.Rate = rate
		}
		if r.burst != nil {
			if *r.burst < 1 || *r.burst > coordinator.MaxBurst {
				return fmt.Errorf("config %s: %s: want a whole number between 1 and %d", path, fmt.Sprintf(r.name, "burst"), coordinator.MaxBurst)
			}
			r.dst.Burst = *r.burst
		}
	}
	if len(fc.ServerName) > 0 {
		var one string
		var many []string
		var names nameList
		switch {
		case json.Unmarshal(fc.ServerName, &one) == nil:
			names.Set(one)
		case json.Unmarshal(fc.ServerName, &many) == nil:
			for _, n := range many {
				names.Set(n)
			}
		default:
			return fmt.Errorf("config %s: server-name: want a string or a list of strings", path)
		}
		cfg.ServerNames = names
	}
	return nil
}

// serveUsage is the help text of `serve`.
func serveUsage() string {
	var b strings.Builder
	b.WriteString(`Usage: latch-coordinator serve [flags]

Runs the coordinator until SIGTERM or SIGINT. On first start it creates the
data directory, the node CA (ca.crt, ca.key), the TLS certificate (tls.crt,
tls.key) and a one-time bootstrap admin API token in <data-dir>/bootstrap-token
(0600; never printed). Agents enroll with keys created through the admin API.

Flags:
`)
	fs, _ := serveFlags()
	fs.VisitAll(func(f *flag.Flag) {
		name, help := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(&b, " %s", name)
		}
		fmt.Fprintf(&b, "\n        %s", help)
		if f.DefValue != "" && f.DefValue != "0s" {
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
		b.WriteString("\n")
	})
	return b.String()
}
