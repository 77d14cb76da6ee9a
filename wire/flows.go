package wire

import (
	"net/netip"
	"time"
)

// Flow log endpoints.
const (
	// PathNodeFlows: the agent POSTs a FlowReport (mTLS) every few seconds.
	PathNodeFlows = "/api/v1/node/flows"
	// PathFlows: GET lists stored flow summaries (admin, audit:read scope),
	// newest first; query parameters node (ID or name, either end), verdict
	// ("accept" or "drop"), since (RFC 3339 or a duration like 15m),
	// limit (default 100, at most 10000).
	PathFlows = "/api/v1/flows"
)

// Flow verdicts.
const (
	FlowAccept = "accept"
	FlowDrop   = "drop"
)

// FlowSummary aggregates the packets of one flow (or, for drops, of one
// source, destination port and reason) over one report interval, as the
// reporting node saw them.
type FlowSummary struct {
	// Direction is "in" (the reporter received it) or "out" (it sent it).
	Direction string `json:"direction"`
	// Src and Dst are overlay (or, for unknown senders, any) addresses.
	Src netip.Addr `json:"src"`
	Dst netip.Addr `json:"dst"`
	// SrcNode and DstNode name the identities behind Src and Dst when
	// the reporter knows them (itself or a peer); empty otherwise.
	SrcNode NodeID `json:"src_node,omitempty"`
	DstNode NodeID `json:"dst_node,omitempty"`
	Proto   Proto  `json:"proto"`
	// DstPort is 0 for ICMP.
	DstPort uint16 `json:"dst_port,omitempty"`
	Verdict string `json:"verdict"`
	// Reason is the filter's reason ("rule", "established", "no-rule",
	// "spoofed", ...); Rule the ID of the rule or grant that admitted it.
	Reason  string    `json:"reason"`
	Rule    string    `json:"rule,omitempty"`
	Packets uint64    `json:"packets"`
	Bytes   uint64    `json:"bytes"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
}

// FlowReport is one batch of summaries from an agent. The coordinator
// bounds a report to MaxFlowsPerReport summaries.
type FlowReport struct {
	Flows []FlowSummary `json:"flows"`
}

// MaxFlowsPerReport bounds a FlowReport.
const MaxFlowsPerReport = 500

// FlowRecord is a stored summary as the admin API lists it.
type FlowRecord struct {
	FlowSummary
	// Reporter is the node that reported it; names are resolved when the
	// coordinator stored it.
	Reporter     NodeID    `json:"reporter"`
	ReporterName string    `json:"reporter_name,omitempty"`
	SrcName      string    `json:"src_name,omitempty"`
	DstName      string    `json:"dst_name,omitempty"`
	Received     time.Time `json:"received"`
}
