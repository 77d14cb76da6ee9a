package policy

import (
	"testing"

	"github.com/latchnet/latch/wire"
)

func TestMayAssignTag(t *testing.T) {
	p, err := Parse([]byte(`{
		"groups":    {"group:sre": ["bob@example.com"]},
		"tagOwners": {"tag:web": ["group:sre"], "tag:db": ["alice@example.com"], "tag:api": []},
	}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		user         string
		tag          wire.Tag
		known, owner bool
	}{
		{"bob@example.com", "tag:web", true, true},    // through the group
		{"alice@example.com", "tag:db", true, true},   // directly
		{"alice@example.com", "tag:web", true, false}, // not in the group
		{"bob@example.com", "tag:api", true, false},   // a tag nobody owns
		{"bob@example.com", "tag:nope", false, false}, // not in tagOwners
		{"", "tag:web", true, false},                  // no user
		{"group:sre", "tag:web", true, false},         // a group is not a user
	} {
		known, owner := p.MayAssignTag(tt.user, tt.tag)
		if known != tt.known || owner != tt.owner {
			t.Errorf("MayAssignTag(%q, %s) = %v, %v; want %v, %v", tt.user, tt.tag, known, owner, tt.known, tt.owner)
		}
	}
}
