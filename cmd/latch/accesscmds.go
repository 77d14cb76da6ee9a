package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/wire"
)

func accessRequestCommand() *command {
	return &command{
		name:    "request",
		summary: "ask for just-in-time access from this node to a service (through latchd)",
		usage:   "access request --to svc:NAME [--port N] --for DURATION --reason TEXT [--wait [--wait-timeout D]] [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			socket := socketFlag(fs, e)
			to := fs.String("to", "", "the `service` to reach, svc:NAME (required)")
			port := fs.Int("port", 0, "one `port` of the service (default: all of its ports)")
			dur := fs.Duration("for", 0, "how long the access should last, e.g. 30m (required; the policy caps it)")
			reason := fs.String("reason", "", "why, for the approver and the audit log, e.g. a ticket (required)")
			wait := fs.Bool("wait", false, "wait until an approver decides; exit 0 once approved, 1 if denied")
			waitTimeout := fs.Duration("wait-timeout", 15*time.Minute, "give up waiting after this `duration` (the request stays pending)")
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("access request", args, 0, ""); err != nil {
					return err
				}
				switch {
				case *to == "":
					return usagef("access request: --to is required")
				case !strings.HasPrefix(*to, "svc:") || len(*to) == len("svc:"):
					return usagef("access request: invalid service %q: want svc:<name>", *to)
				case *port < 0 || *port > 65535:
					return usagef("access request: --port must be 1..65535")
				case *dur == 0:
					return usagef("access request: --for is required (e.g. --for 30m)")
				case *dur < 0:
					return usagef("access request: --for must be positive")
				case strings.TrimSpace(*reason) == "":
					return usagef("access request: --reason is required")
				case *wait && *waitTimeout <= 0:
					return usagef("access request: --wait-timeout must be positive")
				}
				c := localapi.NewClient(*socket)
				ar, err := c.RequestAccess(ctx, wire.NodeAccessRequest{
					To: *to, Port: uint16(*port), Duration: *dur, Reason: *reason,
				})
				if err != nil {
					return err
				}
				if *wait && ar.State == wire.AccessPending {
					if !*asJSON {
						fmt.Fprintf(e.stdout, "access request %s is pending: %s for %s; waiting for an approver\n", ar.ID, accessTarget(ar), ar.Duration)
					}
					if ar, err = waitForDecision(ctx, c, ar, *waitTimeout); err != nil {
						return err
					}
				}
				if *asJSON {
					return writeJSON(e.stdout, ar)
				}
				now := time.Now()
				switch ar.State {
				case wire.AccessPending:
					fmt.Fprintf(e.stdout, "access request %s is pending: %s for %s\n", ar.ID, accessTarget(ar), ar.Duration)
					fmt.Fprintf(e.stdout, "an approver decides with: latch access approve %s (or deny)\n", ar.ID)
				case wire.AccessApproved:
					fmt.Fprintf(e.stdout, "access request %s approved by %s: %s until %s\n", ar.ID, first(ar.Approver, "-"), accessTarget(ar), untilStr(ar.Expires, now))
				default:
					return fmt.Errorf("access request %s is %s%s", ar.ID, ar.State, decisionReason(ar))
				}
				return nil
			}
		},
	}
}

// accessPollInterval is how often --wait asks for the request's state.
var accessPollInterval = time.Second

// waitForDecision polls the agent until the request is no longer pending,
// ctx ends or timeout passes.
func waitForDecision(ctx context.Context, c *localapi.Client, ar wire.AccessRequest, timeout time.Duration) (wire.AccessRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(accessPollInterval)
	defer tick.Stop()
	for ar.State == wire.AccessPending {
		select {
		case <-ctx.Done():
			return ar, fmt.Errorf("access request %s is still pending after %s; it stays open (latch access list)", ar.ID, timeout)
		case <-tick.C:
		}
		next, err := c.AccessRequest(ctx, ar.ID)
		if err != nil {
			if ctx.Err() != nil {
				continue // reported as still pending above
			}
			return ar, err
		}
		ar = next
	}
	return ar, nil
}

// accessTarget renders what a request is for: "svc:db" or "svc:db port 5432".
func accessTarget(ar wire.AccessRequest) string {
	if ar.Port == 0 {
		return ar.To
	}
	return ar.To + " port " + strconv.Itoa(int(ar.Port))
}

func decisionReason(ar wire.AccessRequest) string {
	if ar.DecisionReason == "" {
		return ""
	}
	return ": " + ar.DecisionReason
}

// untilStr renders an expiry: "2026-11-22 12:30:00 UTC (in 29m58s)".
func untilStr(t, now time.Time) string {
	return fmt.Sprintf("%s (%s)", t.UTC().Format("2006-01-02 15:04:05 UTC"), relTime(t, now))
}

// accessStates are the values of access list --state.
var accessStates = []string{"pending", "active", "all"}

func accessListCommand() *command {
	return &command{
		name:    "list",
		summary: "list access requests and sessions, with the time left of active ones",
		usage:   "access list [--state pending|active|all] [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			state := fs.String("state", "all", "which requests: pending, active (approved, not expired) or all")
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("access list", args, 0, ""); err != nil {
					return err
				}
				if !slices.Contains(accessStates, *state) {
					return usagef("access list: invalid --state %q: want pending, active or all", *state)
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				reqs := []wire.AccessRequest{}
				if err := c.do(ctx, http.MethodGet, wire.PathAccess+"?state="+url.QueryEscape(*state), nil, &reqs); err != nil {
					return fmt.Errorf("listing access requests: %w", err)
				}
				if *asJSON {
					return writeJSON(e.stdout, reqs)
				}
				printAccessRequests(e.stdout, reqs, *state, time.Now())
				return nil
			}
		},
	}
}

// accessState is a request's state as of now: an approved session past
// its expiry reads "expired" even before the coordinator says so.
func accessState(ar wire.AccessRequest, now time.Time) string {
	if ar.State == wire.AccessApproved && !ar.Expires.IsZero() && !now.Before(ar.Expires) {
		return wire.AccessExpired
	}
	return ar.State
}

// remaining renders the time left of an active session, or "-".
func remaining(ar wire.AccessRequest, now time.Time) string {
	if accessState(ar, now) != wire.AccessApproved || ar.Expires.IsZero() {
		return "-"
	}
	return ar.Expires.Sub(now).Round(time.Second).String()
}

func printAccessRequests(w io.Writer, reqs []wire.AccessRequest, state string, now time.Time) {
	if len(reqs) == 0 {
		if state == "all" {
			fmt.Fprintln(w, "no access requests")
		} else {
			fmt.Fprintf(w, "no %s access requests\n", state)
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tFROM\tTO\tPORT\tFOR\tREMAINING\tREQUESTED\tAPPROVER\tREASON")
	for _, ar := range reqs {
		port := "all"
		if ar.Port != 0 {
			port = strconv.Itoa(int(ar.Port))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ar.ID, accessState(ar, now), first(ar.SrcName, string(ar.Src)), ar.To, port,
			ar.Duration, remaining(ar, now), relTime(ar.Created, now), first(ar.Approver, "-"), oneLine(ar.Reason))
	}
	tw.Flush()
}

// accessDecision is approve, deny or revoke.
type accessDecision struct {
	verb    string // "approve": the path element and the command name
	doing   string // "approving"
	done    string // "approved"
	summary string
}

func accessApproveCommand() *command {
	return accessDecideCommand(accessDecision{"approve", "approving", "approved", "approve a pending access request: the session starts now"})
}

func accessDenyCommand() *command {
	return accessDecideCommand(accessDecision{"deny", "denying", "denied", "deny a pending access request"})
}

func accessRevokeCommand() *command {
	return accessDecideCommand(accessDecision{"revoke", "revoking", "revoked", "end an approved session now: its flows stop at once"})
}

func accessDecideCommand(d accessDecision) *command {
	return &command{
		name:    d.verb,
		summary: d.summary,
		usage:   "access " + d.verb + " ID [--reason TEXT] [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			reason := fs.String("reason", "", "why, for the requester and the audit log")
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("access "+d.verb, args, 1, "access request ID"); err != nil {
					return err
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				var ar wire.AccessRequest
				path := wire.PathAccess + "/" + url.PathEscape(args[0]) + "/" + d.verb
				if err := c.do(ctx, http.MethodPost, path, wire.DecideRequest{Reason: *reason}, &ar); err != nil {
					return fmt.Errorf("%s access request %s: %w", d.doing, args[0], err)
				}
				if *asJSON {
					return writeJSON(e.stdout, ar)
				}
				who := first(ar.SrcName, string(ar.Src))
				if ar.State == wire.AccessApproved {
					fmt.Fprintf(e.stdout, "%s access request %s: %s -> %s until %s\n", d.done, ar.ID, who, accessTarget(ar), untilStr(ar.Expires, time.Now()))
					return nil
				}
				fmt.Fprintf(e.stdout, "%s access request %s: %s -> %s\n", d.done, ar.ID, who, accessTarget(ar))
				return nil
			}
		},
	}
}
