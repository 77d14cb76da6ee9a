package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/wire"
)

// maxFlowLimit is the API's largest page of flow records.
const maxFlowLimit = 10000

func flowsCommand() *command {
	return &command{
		name:    "flows",
		summary: "list the flow summaries agents reported: who reached which service, verdicts, packets, bytes (admin)",
		usage:   "flows [--node NAME] [--verdict accept|drop] [--since 15m] [--limit N] [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			node := fs.String("node", "", "only flows with node `NAME` (or ID) as reporter, source or destination")
			verdict := fs.String("verdict", "", "only flows with `verdict` accept or drop")
			since := fs.String("since", "", "only flows received in the last `duration` (15m, 24h) or since an RFC 3339 time")
			limit := fs.Int("limit", 0, "at most `N` flows, newest first (default 100, at most 10000)")
			asJSON := fs.Bool("json", false, "print a JSON array of flow records")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("flows", args, 0, ""); err != nil {
					return err
				}
				q := url.Values{}
				switch *verdict {
				case "":
				case wire.FlowAccept, wire.FlowDrop:
					q.Set("verdict", *verdict)
				default:
					return usagef("flows: --verdict %q: want accept or drop", *verdict)
				}
				if *since != "" {
					d, derr := time.ParseDuration(*since)
					_, terr := time.Parse(time.RFC3339, *since)
					if (derr != nil || d < 0) && terr != nil {
						return usagef("flows: --since %q: want a duration like 15m or an RFC 3339 time", *since)
					}
					q.Set("since", *since)
				}
				if *limit < 0 || *limit > maxFlowLimit {
					return usagef("flows: --limit %d: want 1..%d", *limit, maxFlowLimit)
				}
				if *limit > 0 {
					q.Set("limit", strconv.Itoa(*limit))
				}
				if *node != "" {
					q.Set("node", *node)
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				path := wire.PathFlows
				if len(q) > 0 {
					path += "?" + q.Encode()
				}
				recs := []wire.FlowRecord{}
				if err := c.do(ctx, http.MethodGet, path, nil, &recs); err != nil {
					return fmt.Errorf("listing flows: %w", err)
				}
				if *asJSON {
					return writeJSON(e.stdout, recs)
				}
				printFlows(e.stdout, recs)
				return nil
			}
		},
	}
}

// printFlows writes recs as a table, newest first as the API lists them.
func printFlows(w io.Writer, recs []wire.FlowRecord) {
	if len(recs) == 0 {
		fmt.Fprintln(w, "no flows")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tREPORTER\tDIR\tSRC\tDST\tVERDICT\tREASON\tPACKETS\tBYTES")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n",
			r.Last.Local().Format(time.RFC3339), flatField(orID(r.ReporterName, string(r.Reporter))), r.Direction,
			flatField(flowSrc(r)), flatField(flowDst(r)), r.Verdict, flatField(r.Reason), r.Packets, flowBytes(r.Bytes))
	}
	tw.Flush()
}

// orID is name, or id when the name is unknown.
func orID(name, id string) string {
	if name != "" {
		return name
	}
	if id != "" {
		return id
	}
	return "-"
}

// flowSrc names the source: its node's name, else its node ID, else its
// address.
func flowSrc(r wire.FlowRecord) string {
	if r.Reason == "overflow" {
		return "-"
	}
	return flowEnd(r.SrcName, r.SrcNode, r.Src)
}

// flowDst is the destination as name:port/proto ("api:8080/tcp"), or
// name/proto for protocols without ports.
func flowDst(r wire.FlowRecord) string {
	if r.Reason == "overflow" {
		return "(other flows)"
	}
	d := flowEnd(r.DstName, r.DstNode, r.Dst)
	if r.DstPort != 0 {
		d += ":" + strconv.Itoa(int(r.DstPort))
	}
	return d + "/" + protoName(r.Proto)
}

func flowEnd(name string, id wire.NodeID, a netip.Addr) string {
	switch {
	case name != "":
		return name
	case id != "":
		return string(id)
	case a.IsValid():
		return a.String()
	}
	return "-"
}

// protoName names the common IP protocols.
func protoName(p wire.Proto) string {
	switch p {
	case wire.ProtoTCP:
		return "tcp"
	case wire.ProtoUDP:
		return "udp"
	case wire.ProtoICMP:
		return "icmp"
	case wire.ProtoICMPv6:
		return "icmpv6"
	}
	return "proto-" + strconv.Itoa(int(p))
}

// flowBytes renders a byte count like bytesStr, for unsigned counts.
func flowBytes(n uint64) string {
	return bytesStr(int64(min(n, math.MaxInt64)))
}
