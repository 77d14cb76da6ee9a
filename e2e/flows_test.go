package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/wire"
)

// flowsPolicy lets web reach svc:api (8080/tcp) and nothing else.
const flowsPolicy = `// Latch e2e: flow logs.
{
  "tagOwners": {"tag:web": [], "tag:api": []},
  "services": {"svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]}},
  "rules": [{"src": ["tag:web"], "dst": ["svc:api"]}],
}
`

// TestFlowLogsRecordAcceptedAndDroppedFlowsByIdentity runs web and api
// under a policy that admits web -> api:8080/tcp only, sends one connection
// that is admitted and one (to port 22) that the filter drops, and proves
// that `latch flows` lists both, reported by api and attributed to web by
// identity: the accepted one with packets and bytes, the dropped one with
// the filter's reason.
func TestFlowLogsRecordAcceptedAndDroppedFlowsByIdentity(t *testing.T) {
	bins := setup(t)
	n := netns.NewNetwork(t)
	coord := cluster.StartCoordinator(t, bins, n.AddHost("coord"))
	coord.SetPolicy(t, flowsPolicy)
	agents := map[string]*cluster.Agent{}
	for _, name := range []string{"web", "api"} {
		h := n.AddHost(name)
		if name == "api" {
			startServices(t, h, portSSH, portAPI)
		}
		agents[name] = cluster.StartAgent(t, bins, h, coord, "--flow-interval", "1s")
	}
	for name, a := range agents {
		key := coord.CreateKey(t, "--tags", "tag:"+name, "--description", "e2e flows "+name)
		a.Up(t, key.Key)
	}
	agents["web"].WaitPeers(t, 30*time.Second, "api")
	agents["api"].WaitPeers(t, 30*time.Second, "web")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nodes, err := coord.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]wire.NodeID{}
	for _, nd := range nodes {
		ids[nd.Hostname] = nd.ID
	}
	apiAddr := agents["api"].OverlayIPv4(t)
	web := agents["web"].Host

	// The allowed connection: polled, as the first one waits for a
	// handshake.
	var last probeResult
	if err := netns.Poll(30*time.Second, func() error {
		last = send(ctx, web, apiAddr, tcpProbe(portAPI), 3*time.Second)
		if last.outcome != reached {
			return fmt.Errorf("web -> api:8080: %v", last)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The refused one: its SYNs are dropped by api's filter.
	if r := send(ctx, web, apiAddr, tcpProbe(portSSH), 3*time.Second); r.outcome != dropped {
		t.Fatalf("web -> api:22 must be dropped: %v", r)
	}

	// Both show up within a few report intervals.
	var accepted, refused wire.FlowRecord
	err = netns.Poll(60*time.Second, func() error {
		res, err := coord.Admin(ctx, "flows", "--node", "web", "--json", "--limit", "1000")
		if err != nil {
			return err
		}
		var recs []wire.FlowRecord
		if err := json.Unmarshal([]byte(res.Stdout), &recs); err != nil {
			return fmt.Errorf("latch flows --json: %v", err)
		}
		accepted, refused = wire.FlowRecord{}, wire.FlowRecord{}
		for _, r := range recs {
			if r.Reporter != ids["api"] || r.Direction != "in" || r.SrcNode != ids["web"] || r.Dst != apiAddr || r.Proto != wire.ProtoTCP {
				continue
			}
			switch {
			case r.DstPort == portAPI && r.Verdict == wire.FlowAccept && accepted.Packets == 0:
				accepted = r
			case r.DstPort == portSSH && r.Verdict == wire.FlowDrop:
				refused = r
			}
		}
		switch {
		case accepted.Packets == 0:
			return fmt.Errorf("no accepted web -> api:8080/tcp flow reported by api yet (%d records)", len(recs))
		case refused.Packets == 0:
			return fmt.Errorf("no dropped web -> api:22/tcp flow reported by api yet (%d records)", len(recs))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if accepted.SrcName != "web" || accepted.DstName != "api" || accepted.ReporterName != "api" || accepted.Bytes == 0 {
		t.Errorf("accepted flow: %+v", accepted)
	}
	if !strings.HasPrefix(accepted.Reason, "accept-") {
		t.Errorf("accepted flow's reason %q", accepted.Reason)
	}
	if refused.Reason != "drop-no-rule" || refused.SrcName != "web" || refused.Bytes == 0 {
		t.Errorf("dropped flow: %+v", refused)
	}
	t.Logf("accepted: %d packets, %d bytes (%s); dropped: %d packets, %d bytes (%s)",
		accepted.Packets, accepted.Bytes, accepted.Reason, refused.Packets, refused.Bytes, refused.Reason)

	// The table a person reads.
	res, err := coord.Admin(ctx, "flows", "--node", "web", "--verdict", "drop", "--since", "15m")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("latch flows --node web --verdict drop --since 15m:\n%s", res.Stdout)
	if !strings.Contains(res.Stdout, "api:22/tcp") || !strings.Contains(res.Stdout, "drop-no-rule") || strings.Contains(res.Stdout, " accept ") {
		t.Errorf("table lacks the dropped flow or shows accepted ones:\n%s", res.Stdout)
	}
}
