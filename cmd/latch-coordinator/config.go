package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
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
	fs.StringVar(&v.logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn or error")
	return fs, v
}

type flagValues struct {
	config, listen, dataDir, db, trustDomain, logLevel string
	serverNames                                        nameList
	nodeCertLifetime, keepalive, ephemeralGrace        time.Duration
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
		case "log-level":
			level = v.logLevel
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
	LogLevel         *string         `json:"log-level"`
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
	for name, pair := range map[string]struct {
		dst *time.Duration
		src *string
	}{
		"node-cert-lifetime": {&cfg.NodeCertLifetime, fc.NodeCertLifetime},
		"keepalive":          {&cfg.Keepalive, fc.Keepalive},
		"ephemeral-grace":    {&cfg.EphemeralGrace, fc.EphemeralGrace},
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
