package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/latchnet/latch/agent"
	"github.com/tailscale/hujson"
)

// Config is latchd's configuration: defaults, then the --config file, then
// flags given on the command line.
type Config struct {
	// StateDir holds identity, keys, certificates and the last netmap.
	// "mem:" means State "mem".
	StateDir string `json:"state_dir"`
	// State is "disk" (the default, also when empty: StateDir) or "mem": identity, keys
	// and the netmap cache live in memory only and nothing is written to
	// disk; the node enrolls as ephemeral and leaves on exit.
	State string `json:"state"`
	// Socket is the local API's unix socket.
	Socket string `json:"socket"`
	// Interface is the overlay interface name (at most 15 bytes).
	Interface string `json:"interface"`
	// Port is the WireGuard UDP listen port.
	Port int `json:"port"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
	// KeyRotation is how often the WireGuard key is replaced, as a Go
	// duration ("24h"); empty means agent.DefaultKeyRotation; "0" never
	// rotates on a schedule (`latch rotate` still does).
	KeyRotation string `json:"key_rotation"`
	// PostureInterval is how often the host posture is re-read and, when
	// it changed, reported, as a Go duration ("30s"); empty means
	// agent.DefaultPostureInterval.
	PostureInterval string `json:"posture_interval"`
	// FlowInterval is how often flow summaries are reported to the
	// coordinator, as a Go duration; empty means DefaultFlowInterval,
	// "0" turns flow logs off (see flows.go).
	FlowInterval string `json:"flow_interval"`
}

// Defaults.
const (
	DefaultStateDir = "/var/lib/latch"
	DefaultSocket   = "/run/latch/latchd.sock"
)

// DefaultConfig returns the configuration without file or flags.
func DefaultConfig() Config {
	return Config{
		StateDir:  DefaultStateDir,
		Socket:    DefaultSocket,
		Interface: agent.DefaultInterface,
		Port:      agent.DefaultListenPort,
		LogLevel:  "info",
	}
}

const usage = `usage: latchd [flags]

latchd is the Latch agent. It runs without an identity until "latch up";
with a saved identity it brings the overlay up from its cached netmap at
once and connects to the coordinator.

With --state mem (or --state-dir mem:) nothing is written to disk: the
identity lives in memory, the node enrolls as ephemeral, and it leaves the
network on SIGTERM or SIGINT, so a container or CI runner vanishes cleanly.

flags:
`

// parseArgs builds the configuration from args. It returns flag.ErrHelp
// for --help (after printing usage to out) and a one-line error for
// anything wrong.
func parseArgs(args []string, out io.Writer) (Config, error) {
	def := DefaultConfig()
	fs := flag.NewFlagSet("latchd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configFile := fs.String("config", "", "JSON or HuJSON configuration `file`; flags override it")
	stateDir := fs.String("state-dir", def.StateDir, "state `dir`ectory (identity, keys, last netmap); \"mem:\" is --state mem")
	stateKind := fs.String("state", def.State, "where state lives: `disk` (--state-dir) or mem (memory only, nothing on disk; the node is ephemeral)")
	socket := fs.String("socket", def.Socket, "local API unix socket `path`")
	iface := fs.String("interface", def.Interface, "overlay interface `name` (at most 15 bytes)")
	port := fs.Int("port", def.Port, "WireGuard UDP listen `port`")
	logLevel := fs.String("log-level", def.LogLevel, "log `level`: debug, info, warn, error")
	keyRotation := fs.String("key-rotation", def.KeyRotation, "replace the WireGuard key every `duration` (with jitter; default 24h); 0 never")
	postureInterval := fs.String("posture-interval", def.PostureInterval, "re-read the host posture (firewall, disk encryption, versions) every `duration` and report changes (default 30s)")
	flowInterval := fs.String("flow-interval", def.FlowInterval, "report flow summaries (who talked to which service, verdicts, packets, bytes; never payloads) to the coordinator every `duration` (default 5s); 0 turns flow logs off")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(out, usage)
			fs.SetOutput(out)
			fs.PrintDefaults()
		}
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg := def
	if *configFile != "" {
		var err error
		if cfg, err = loadFile(*configFile, def); err != nil {
			return Config{}, err
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "state-dir":
			cfg.StateDir = *stateDir
		case "state":
			cfg.State = *stateKind
		case "socket":
			cfg.Socket = *socket
		case "interface":
			cfg.Interface = *iface
		case "port":
			cfg.Port = *port
		case "log-level":
			cfg.LogLevel = *logLevel
		case "key-rotation":
			cfg.KeyRotation = *keyRotation
		case "posture-interval":
			cfg.PostureInterval = *postureInterval
		case "flow-interval":
			cfg.FlowInterval = *flowInterval
		}
	})
	return cfg, cfg.validate()
}

// loadFile reads a JSON or HuJSON file over def. Unknown fields are errors.
func loadFile(path string, def Config) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	std, err := hujson.Standardize(b)
	if err != nil {
		return Config{}, fmt.Errorf("parsing config %s: %v", path, err)
	}
	cfg := def
	dec := json.NewDecoder(bytes.NewReader(std))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("parsing config %s: %v", path, err)
	}
	return cfg, nil
}

func (c Config) validate() error {
	switch {
	case c.StateDir == "":
		return errors.New("--state-dir must not be empty")
	case c.State != "" && c.State != StateDisk && c.State != StateMem:
		return fmt.Errorf("invalid --state %q: want disk or mem", c.State)
	case c.Socket == "":
		return errors.New("--socket must not be empty")
	case c.Interface == "" || len(c.Interface) > 15 || strings.ContainsAny(c.Interface, "/ \t\n"):
		return fmt.Errorf("invalid --interface %q: want a name of 1..15 bytes", c.Interface)
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("invalid --port %d: want 1..65535", c.Port)
	}
	if _, err := c.keyRotation(); err != nil {
		return err
	}
	if _, err := c.postureInterval(); err != nil {
		return err
	}
	if _, err := c.flowInterval(); err != nil {
		return err
	}
	_, err := c.level()
	return err
}

// State kinds (--state).
const (
	StateDisk = "disk"
	StateMem  = "mem"
	// memStateDir is the --state-dir that means --state mem.
	memStateDir = "mem:"
)

// MemoryState reports whether state lives in memory only.
func (c Config) MemoryState() bool { return c.State == StateMem || c.StateDir == memStateDir }

// minKeyRotation keeps a typo ("24s") from rotating keys in a loop.
const minKeyRotation = time.Minute

// keyRotation returns agent.Config.KeyRotation: negative for never.
func (c Config) keyRotation() (time.Duration, error) {
	if c.KeyRotation == "" {
		return agent.DefaultKeyRotation, nil
	}
	d, err := time.ParseDuration(c.KeyRotation)
	switch {
	case err != nil || d < 0 || (d > 0 && d < minKeyRotation):
		return 0, fmt.Errorf("invalid --key-rotation %q: want a duration of at least %v, like \"24h\", or 0 for never", c.KeyRotation, minKeyRotation)
	case d == 0:
		return -1, nil
	}
	return d, nil
}

// Bounds of --posture-interval: reading the posture runs nft, so not in
// a loop; and a posture change should not wait for hours.
const (
	minPostureInterval = time.Second
	maxPostureInterval = time.Hour
)

// postureInterval returns agent.Config.PostureInterval.
func (c Config) postureInterval() (time.Duration, error) {
	if c.PostureInterval == "" {
		return agent.DefaultPostureInterval, nil
	}
	d, err := time.ParseDuration(c.PostureInterval)
	if err != nil || d < minPostureInterval || d > maxPostureInterval {
		return 0, fmt.Errorf("invalid --posture-interval %q: want a duration from %v to %v, like \"30s\"", c.PostureInterval, minPostureInterval, maxPostureInterval)
	}
	return d, nil
}

func (c Config) level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	return l, nil
}
