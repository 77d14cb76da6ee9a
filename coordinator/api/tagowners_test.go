package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/latchnet/latch/wire"
)

func TestTaggedKeysNeedTheTagOwner(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.createToken("alice@example.com", wire.ScopeKeysWrite) // in group:dba, which owns tag:db
	bob := e.createToken("bob@example.com", wire.ScopeKeysWrite)
	key := func(tags ...wire.Tag) wire.CreateKeyRequest { return wire.CreateKeyRequest{Tags: tags} }

	// Without a policy nobody owns a tag: only admin tokens may assign one.
	e.as(alice, http.MethodPost, wire.PathKeys, key("tag:db"), http.StatusForbidden, nil)
	e.as(e.token, http.MethodPost, wire.PathKeys, key("tag:db"), http.StatusCreated, nil)

	e.setPolicy(strings.Replace(refPolicy, `"tag:db": []`, `"tag:db": ["group:dba"]`, 1))
	for _, tt := range []struct {
		name  string
		token string
		tags  []wire.Tag
		want  int
	}{
		{"owner through a group", alice, []wire.Tag{"tag:db"}, http.StatusCreated},
		{"untagged needs no owner", bob, nil, http.StatusCreated},
		{"not an owner", bob, []wire.Tag{"tag:db"}, http.StatusForbidden},
		{"one tag not owned", alice, []wire.Tag{"tag:db", "tag:web"}, http.StatusForbidden},
		{"admin may assign any known tag", e.token, []wire.Tag{"tag:web"}, http.StatusCreated},
		{"unknown tag, even for an admin", e.token, []wire.Tag{"tag:nope"}, http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var before []wire.KeyInfo
			e.as(e.token, http.MethodGet, wire.PathKeys, nil, http.StatusOK, &before)
			e.as(tt.token, http.MethodPost, wire.PathKeys, key(tt.tags...), tt.want, nil)
			var after []wire.KeyInfo
			e.as(e.token, http.MethodGet, wire.PathKeys, nil, http.StatusOK, &after)
			if created := len(after) - len(before); created != map[bool]int{true: 1, false: 0}[tt.want == http.StatusCreated] {
				t.Errorf("%d keys created", created)
			}
		})
	}
}
