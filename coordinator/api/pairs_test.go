package api

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/latchnet/latch/wire"
)

func TestPolicyPairsNeedNodesReadAndMatchTheDryRun(t *testing.T) {
	e := newEnv(t, nil)
	e.enrollHosts()
	reader := e.createToken("viewer@example.com", wire.ScopeNodesRead)
	other := e.createToken("auditor@example.com", wire.ScopeAuditRead)

	var empty wire.PolicyPairs
	e.as(reader, http.MethodGet, wire.PathPolicyPairs, nil, http.StatusOK, &empty)
	if empty.Version != 0 || empty.Pairs == nil || len(empty.Pairs) != 0 {
		t.Fatalf("before any policy: %+v, want version 0 and no pairs", empty)
	}
	e.setPolicy(refPolicy)
	// The dry run of an empty policy loses exactly the pairs allowed now.
	var dry wire.SetPolicyResponse
	e.admin(http.MethodPost, wire.PathPolicy, wire.SetPolicyRequest{Source: "{}", DryRun: true}, http.StatusOK, &dry)
	if len(dry.Lost) == 0 {
		t.Fatal("the dry run lists no pairs")
	}

	tests := []struct {
		name, token, query string
		status             int
		want               []wire.Pair
	}{
		{"all pairs", reader, "", http.StatusOK, dry.Lost},
		{"filtered by name", reader, "?node=db", http.StatusOK, []wire.Pair{
			{Src: "api", Dst: "db", Proto: "tcp", Ports: "5432"},
			{Src: "api", Dst: "db", Proto: "tcp", Ports: "9187"},
		}},
		{"filtered to a node that is both ends", reader, "?node=api", http.StatusOK, []wire.Pair{
			{Src: "api", Dst: "db", Proto: "tcp", Ports: "5432"},
			{Src: "api", Dst: "db", Proto: "tcp", Ports: "9187"},
			{Src: "web", Dst: "api", Proto: "tcp", Ports: "8080"},
		}},
		{"a node with no pairs", reader, "?node=ci", http.StatusOK, []wire.Pair{}},
		{"unknown node", reader, "?node=nope", http.StatusNotFound, nil},
		{"without nodes:read", other, "", http.StatusForbidden, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got wire.PolicyPairs
			var out any
			if tt.status == http.StatusOK {
				out = &got
			}
			e.as(tt.token, http.MethodGet, wire.PathPolicyPairs+tt.query, nil, tt.status, out)
			if tt.status != http.StatusOK {
				return
			}
			if got.Version != 1 {
				t.Errorf("version %d, want 1", got.Version)
			}
			if !reflect.DeepEqual(got.Pairs, tt.want) {
				t.Errorf("pairs\n got %+v\nwant %+v", got.Pairs, tt.want)
			}
		})
	}

	// By ID as well as by name.
	var nodes []wire.NodeInfo
	e.as(reader, http.MethodGet, wire.PathNodes, nil, http.StatusOK, &nodes)
	for _, n := range nodes {
		if n.Name != "web" {
			continue
		}
		var got wire.PolicyPairs
		e.as(reader, http.MethodGet, wire.PathPolicyPairs+"?node="+string(n.ID), nil, http.StatusOK, &got)
		if got.Node != "web" || len(got.Pairs) != 1 || got.Pairs[0].Dst != "api" {
			t.Fatalf("by ID: %+v", got)
		}
	}
}
