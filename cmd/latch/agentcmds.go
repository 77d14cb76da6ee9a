package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/wire"
)

// DefaultSocket is where latchd listens unless told otherwise.
const DefaultSocket = "/run/latch/latchd.sock"

// socketFlag adds --socket (LATCH_SOCKET) to fs.
func socketFlag(fs *flag.FlagSet, e *env) *string {
	return fs.String("socket", e.envOr("LATCH_SOCKET", DefaultSocket), "latchd's unix socket `path` (env LATCH_SOCKET)")
}

func upCommand() *command {
	return &command{
		name:    "up",
		summary: "connect this node, enrolling it first if needed, and wait for its netmap",
		usage: "up --coordinator URL (--auth-key KEY | --id-token TOKEN | --id-token-file FILE) [--ca-fingerprint sha256:HEX]\n" +
			"          [--hostname H] [--tags tag:a,tag:b] [--ephemeral]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			socket := socketFlag(fs, e)
			coord := fs.String("coordinator", e.getenv("LATCH_COORDINATOR"), "coordinator `URL` (env LATCH_COORDINATOR); needed to enroll")
			key := fs.String("auth-key", e.getenv("LATCH_AUTH_KEY"), "enrollment `key` (env LATCH_AUTH_KEY); needed to enroll")
			idf := addIDTokenFlags(fs, e) // workload identity (trustcmds.go)
			hostname := fs.String("hostname", "", "host `name` to enroll with (default: the system's)")
			tags := fs.String("tags", "", "comma-separated `tags` to ask for (default: all of the key's)")
			ephemeral := fs.Bool("ephemeral", false, "enroll as an ephemeral node: deleted at once on latch down or agent exit, and 15s after losing contact")
			timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the first netmap")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("up", args, 0, ""); err != nil {
					return err
				}
				tl, err := parseTags(*tags)
				if err != nil {
					return usagef("up: %v", err)
				}
				if *timeout <= 0 {
					return usagef("up: --timeout must be positive")
				}
				idToken, fp, err := idf.resolve(*key)
				if err != nil {
					return err
				}
				if *key != "" && idToken == "" {
					// Fail fast, without echoing the key.
					if _, err := wire.ParseAuthKey(*key); err != nil {
						return usagef("up: %v", err)
					}
				}
				cl := localapi.NewClient(*socket)
				upReq := localapi.UpRequest{
					Coordinator: *coord, AuthKey: *key, Hostname: *hostname,
					Tags: tl, Ephemeral: *ephemeral, Timeout: *timeout,
				}
				if idToken != "" {
					upReq.AuthKey, upReq.IDToken, upReq.CAFingerprint = "", idToken, fp
				}
				resp, err := cl.Up(ctx, upReq)
				if err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(e.stdout, resp)
				}
				if resp.Enrolled {
					fmt.Fprintf(e.stdout, "enrolled as node %s\n", resp.NodeID)
				}
				fmt.Fprintf(e.stdout, "latch is up: %s %s\n", resp.Name, joinPrefixAddrs(resp.Addresses, " "))
				return nil
			}
		},
	}
}

func downCommand() *command {
	return &command{
		name:    "down",
		summary: "disconnect and remove the interface; the node stays enrolled (an ephemeral node leaves and is deleted)",
		usage:   "down",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			socket := socketFlag(fs, e)
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("down", args, 0, ""); err != nil {
					return err
				}
				cl := localapi.NewClient(*socket)
				st, err := cl.Status(ctx)
				if err != nil {
					return err
				}
				if err := cl.Down(ctx); err != nil {
					return err
				}
				if st.Self != nil && st.Self.Ephemeral {
					fmt.Fprintln(e.stdout, "latch is down: this ephemeral node left the network and was deleted")
					return nil
				}
				fmt.Fprintln(e.stdout, "latch is down (still enrolled: \"latch up\" reconnects)")
				return nil
			}
		},
	}
}

func statusCommand() *command {
	return &command{
		name:    "status",
		summary: "show this node's state and its peers",
		usage:   "status [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			socket := socketFlag(fs, e)
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("status", args, 0, ""); err != nil {
					return err
				}
				st, err := localapi.NewClient(*socket).Status(ctx)
				if err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(e.stdout, st)
				}
				printStatus(e.stdout, st, time.Now())
				return nil
			}
		},
	}
}

func printStatus(w io.Writer, st localapi.Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "state:\t%s\n", st.State)
	if st.Self != nil {
		fmt.Fprintf(tw, "node:\t%s %s (id %s)\n", st.Self.Name, joinPrefixAddrs(st.Self.Addresses, " "), st.Self.ID)
	}
	if st.Coordinator != "" {
		fmt.Fprintf(tw, "coordinator:\t%s\n", st.Coordinator)
	}
	if st.Interface != "" {
		fmt.Fprintf(tw, "interface:\t%s\n", st.Interface)
	}
	if st.NetmapVersion != 0 {
		fmt.Fprintf(tw, "netmap:\tversion %d, %d peers\n", st.NetmapVersion, len(st.Peers))
	}
	if !st.CertExpires.IsZero() {
		fmt.Fprintf(tw, "certificate:\texpires %s\n", relTime(st.CertExpires, now))
	}
	switch {
	case st.KeyExpired:
		fmt.Fprintf(tw, "node key:\t%s\n", localapi.KeyExpiredMessage(st.KeyExpiry))
	case !st.KeyExpiry.IsZero():
		fmt.Fprintf(tw, "node key:\texpires %s (%s)\n", relTime(st.KeyExpiry, now), st.KeyExpiry.UTC().Format(time.RFC3339))
	case st.NetmapVersion != 0:
		fmt.Fprintf(tw, "node key:\tdoes not expire\n")
	}
	if p := st.Posture; p != nil {
		fmt.Fprintf(tw, "posture:\t%s\n", postureLine(p))
	}
	if st.NetmapVersion != 0 {
		fmt.Fprintf(tw, "inbound rules:\t%d\n", len(st.Rules))
		for _, r := range st.Rules {
			if r.Expires.IsZero() {
				continue
			}
			verb := "expires"
			if !now.Before(r.Expires) {
				verb = "expired"
			}
			fmt.Fprintf(tw, "\t%s %s %s\n", r.ID, verb, relTime(r.Expires, now))
		}
	}
	if st.LastError != "" {
		fmt.Fprintf(tw, "last error:\t%s\n", st.LastError)
	}
	tw.Flush()
	if st.State == localapi.StateNeedsLogin {
		fmt.Fprintln(w, "\nnot enrolled: run latch up --coordinator URL --auth-key KEY")
		return
	}
	if len(st.Peers) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// IN lists the rules that let the peer open flows into this node;
	// "-" means it may be reached but may not connect in.
	fmt.Fprintln(tw, "PEER\tADDRESSES\tIN\tENDPOINT\tHANDSHAKE\tRX\tTX")
	for _, p := range st.Peers {
		ep := "-"
		if p.Endpoint.IsValid() {
			ep = p.Endpoint.String()
		} else if len(p.Endpoints) > 0 {
			ep = p.Endpoints[0].String()
		}
		hs := "never"
		if !p.LastHandshake.IsZero() {
			hs = relTime(p.LastHandshake, now)
		}
		in := "-"
		if len(p.Rules) > 0 {
			in = strings.Join(p.Rules, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, joinPrefixAddrs(p.Addresses, ","), in, ep, hs, bytesStr(p.RxBytes), bytesStr(p.TxBytes))
	}
	tw.Flush()
}

// postureLine renders a posture on one line; unknown values show as "?".
func postureLine(p *wire.Posture) string {
	str := func(s string) string {
		if s == "" {
			return "?"
		}
		return s
	}
	b := func(v *bool) string {
		if v == nil {
			return "?"
		}
		return yesNo(*v)
	}
	return fmt.Sprintf("os %s %s, kernel %s, agent %s, hostname %s, firewall %s, disk encryption %s",
		str(p.OS), str(p.OSVersion), str(p.Kernel), str(p.AgentVersion), str(p.Hostname), b(p.Firewall), b(p.DiskEncryption))
}

func pingCommand() *command {
	return &command{
		name:    "ping",
		summary: "ping a peer over the overlay (PEER is a name or an overlay IP)",
		usage:   "ping PEER [-c N]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			socket := socketFlag(fs, e)
			count := fs.Int("c", 4, "number of echo requests")
			interval := fs.Duration("i", time.Second, "interval between requests")
			timeout := fs.Duration("W", 2*time.Second, "time to wait for each reply")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("ping", args, 1, "PEER"); err != nil {
					return err
				}
				if *count < 1 {
					return usagef("ping: -c must be at least 1")
				}
				if *interval <= 0 || *timeout <= 0 {
					return usagef("ping: -i and -W must be positive")
				}
				return runPing(ctx, e, *socket, localapi.PingRequest{Peer: args[0], Count: *count, Interval: *interval, Timeout: *timeout})
			}
		},
	}
}

func runPing(ctx context.Context, e *env, socket string, req localapi.PingRequest) error {
	var target localapi.PingTarget
	var rtts []time.Duration
	sent := 0
	err := localapi.NewClient(socket).Ping(ctx, req, func(ev localapi.PingEvent) {
		switch {
		case ev.Target != nil:
			target = *ev.Target
			fmt.Fprintf(e.stdout, "PING %s (%s)\n", target.Name, target.Address)
		case ev.Reply != nil:
			sent++
			r := ev.Reply
			if r.Error != "" {
				fmt.Fprintf(e.stdout, "no reply from %s: icmp_seq=%d (%s)\n", target.Address, r.Seq, r.Error)
				return
			}
			rtts = append(rtts, r.RTT)
			fmt.Fprintf(e.stdout, "reply from %s: icmp_seq=%d time=%s\n", target.Address, r.Seq, msStr(r.RTT))
		}
	})
	if sent > 0 {
		fmt.Fprintf(e.stdout, "\n--- %s ping statistics ---\n", target.Name)
		loss := 100 * (sent - len(rtts)) / sent
		fmt.Fprintf(e.stdout, "%d packets transmitted, %d received, %d%% packet loss\n", sent, len(rtts), loss)
		if len(rtts) > 0 {
			lo, hi, sum := rtts[0], rtts[0], time.Duration(0)
			for _, d := range rtts {
				lo, hi, sum = min(lo, d), max(hi, d), sum+d
			}
			fmt.Fprintf(e.stdout, "rtt min/avg/max = %s/%s/%s\n", msStr(lo), msStr(sum/time.Duration(len(rtts))), msStr(hi))
		}
	}
	if err != nil {
		return err
	}
	if len(rtts) == 0 {
		return fmt.Errorf("no reply from %s", target.Name)
	}
	return nil
}

func parseTags(s string) ([]wire.Tag, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []wire.Tag
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		if !strings.HasPrefix(t, "tag:") || len(t) == len("tag:") {
			return nil, fmt.Errorf("invalid tag %q: want tag:<name>", t)
		}
		out = append(out, wire.Tag(t))
	}
	return out, nil
}

func joinPrefixAddrs(ps []netip.Prefix, sep string) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Addr().String()
	}
	return strings.Join(s, sep)
}
