package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netns"
)

// posturePolicy lets web reach the API only while web runs a host
// firewall.
const posturePolicy = `// Latch e2e: access that depends on the source's posture.
{
  "tagOwners": {"tag:web": [], "tag:api": []},
  "services": {
    "svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]},
  },
  "postures": {
    "posture:firewalled": ["firewall == true", "os == linux"],
  },
  "rules": [
    {"src": ["tag:web"], "dst": ["svc:api"], "srcPosture": ["posture:firewalled"]},
  ],
}
`

// postureBound bounds how long a posture change may take to change
// access with --posture-interval 1s (generous; it is measured).
const postureBound = 15 * time.Second

// firewallRuleset is a small host firewall: a filter chain on input with
// one rule that accepts what the default would accept anyway, so the
// overlay's own traffic is untouched.
var firewallRuleset = [][]string{
	{"nft", "add", "table", "inet", "e2efw"},
	{"nft", "add", "chain", "inet", "e2efw", "input", "{ type filter hook input priority 0; policy accept; }"},
	{"nft", "add", "rule", "inet", "e2efw", "input", "ct", "state", "established,related", "accept"},
}

// waitFirewallPosture waits until web's agent reports firewall=on in its
// status.
func waitFirewallPosture(t *testing.T, pn *policyNet, on bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	netns.Eventually(t, 10*time.Second, func() error {
		st, err := fullStatus(ctx, pn.agents[hostWeb])
		if err != nil {
			return err
		}
		if st.Posture == nil || st.Posture.Firewall == nil || *st.Posture.Firewall != on {
			return fmt.Errorf("web's posture %+v, want firewall %v", st.Posture, on)
		}
		return nil
	})
}

// TestPostureChangeGrantsAndRevokesAccess runs web with --posture-interval
// 1s under a policy that lets web reach the API only with a host
// firewall: without one web cannot reach the API; loading an nftables
// ruleset in web's namespace grants access within seconds; flushing it
// takes access away again.
func TestPostureChangeGrantsAndRevokesAccess(t *testing.T) {
	pn := startTaggedNet(t, posturePolicy, []string{hostWeb, hostAPI}, []uint16{portAPI}, "--posture-interval", "1s")
	web := pn.agents[hostWeb]
	webToAPI := flow{hostWeb, hostAPI, tcpProbe(portAPI)}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// No firewall in web's namespace: no access, not even visibility.
	waitFirewallPosture(t, pn, false)
	waitPeerSets(t, pn, map[string][]string{hostWeb: nil, hostAPI: nil})
	expectOutcomes(t, pn, "without a firewall", map[flow]outcome{webToAPI: dropped})

	// A firewall appears: access within seconds.
	start := time.Now()
	for _, cmd := range firewallRuleset {
		web.Host.MustRun(t, ctx, cmd...)
	}
	waitFirewallPosture(t, pn, true)
	reported := time.Since(start)
	waitReached(t, pn, webToAPI, postureBound)
	granted := time.Since(start)
	metric(t, "posture_firewall_on_to_access_ms", granted.Milliseconds(), "posture_interval=1s",
		fmt.Sprintf("status_shows_posture_ms=%d", reported.Milliseconds()))
	waitPeerSets(t, pn, map[string][]string{hostWeb: {hostAPI}, hostAPI: {hostWeb}})

	// The firewall goes: access goes.
	start = time.Now()
	web.Host.MustRun(t, ctx, "nft", "flush", "ruleset")
	watchers := map[string]<-chan time.Time{
		hostWeb: watchPeerSet(web, nil, postureBound),
		hostAPI: watchPeerSet(pn.agents[hostAPI], nil, postureBound),
	}
	if last := lastOf(t, "dropping the peer after the firewall went", watchers); !last.IsZero() {
		metric(t, "posture_firewall_off_to_revoked_ms", last.Sub(start).Milliseconds(), "posture_interval=1s",
			"how=last_of_web_and_api_netmaps_without_each_other")
	}
	expectOutcomes(t, pn, "after the firewall was flushed", map[flow]outcome{webToAPI: dropped})
}
