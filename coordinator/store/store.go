// Package store persists the coordinator's state: network metadata,
// enrollment keys, admin API tokens, nodes, the versioned access policy
// and just-in-time access requests (grants).
//
// Store is the seam between the coordinator and its database. The default
// implementation is SQLite (modernc.org/sqlite, pure Go) in WAL mode with
// synchronous=FULL, so a commit that returned has survived both a kill -9
// of the process and a power loss. Queries stay within what PostgreSQL
// also speaks (ON CONFLICT, no SQLite-only functions; times as integer
// microseconds, lists as JSON text), so a Postgres implementation is a
// second type behind the same interface with its own migrations and
// placeholders.
//
// Every state change is one transaction, and the audit record describing
// it (an audit.Entry attached to the call's context with audit.With) is
// appended in that same transaction, so a change and its record are
// committed together or not at all. Enrollment in particular validates
// and consumes the enrollment key, allocates the node's addresses and
// inserts the node atomically: a one-off key enrolls exactly one node no
// matter how many requests race for it. Every change that alters what some
// node's netmap shows also bumps the network's netmap version in the same
// transaction, so Snapshot's version identifies its content.
//
// Secrets (enrollment key and API token secrets) are never stored, only
// their SHA-256 (see HashSecret); callers compare in constant time.
package store

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/wire"
)

// Errors callers branch on. They are wrapped with the operation; test them
// with errors.Is.
var (
	// ErrNotFound reports that the named key, token or node does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidKey reports an enrollment key that does not exist or whose
	// secret does not match. The two are deliberately indistinguishable.
	ErrInvalidKey = errors.New("invalid enrollment key")
	// ErrKeyExpired reports a genuine enrollment key past its expiry.
	ErrKeyExpired = errors.New("enrollment key expired")
	// ErrKeyRevoked reports a genuine enrollment key that was revoked.
	ErrKeyRevoked = errors.New("enrollment key revoked")
	// ErrKeyUsed reports a one-off enrollment key that already enrolled a node.
	ErrKeyUsed = errors.New("enrollment key already used")
	// ErrTagNotAllowed reports a requested tag the enrollment key does not carry.
	ErrTagNotAllowed = errors.New("tag not allowed by the enrollment key")
	// ErrWireGuardKeyInUse reports a WireGuard key already bound to a node.
	ErrWireGuardKeyInUse = errors.New("WireGuard key already belongs to another node")
	// ErrNodeKeyRevoked reports a WireGuard or certificate key of a
	// revoked node.
	ErrNodeKeyRevoked = errors.New("key of a revoked node")
	// ErrAddressPoolExhausted reports that no overlay address is free.
	ErrAddressPoolExhausted = errors.New("overlay address pool exhausted")
	// ErrVersionConflict reports a policy save whose expected current
	// version is not the current one.
	ErrVersionConflict = errors.New("policy version conflict")
	// ErrPolicyChanged reports an access decision checked against a policy
	// version that is no longer current; check again and retry.
	ErrPolicyChanged = errors.New("policy changed since the decision was checked")
	// ErrAlreadyExists reports an ID that is already taken.
	ErrAlreadyExists = errors.New("already exists")
)

// StateError reports an access request that is not in the state a
// decision needs (deciding an already decided request).
type StateError struct {
	ID    string
	State string // the request's current state
}

func (e *StateError) Error() string {
	return fmt.Sprintf("access request %s is %s", e.ID, e.State)
}

// TagNotAllowedError reports the first requested tag an enrollment key
// does not carry. It matches ErrTagNotAllowed with errors.Is.
type TagNotAllowedError struct{ Tag wire.Tag }

func (e *TagNotAllowedError) Error() string {
	return fmt.Sprintf("tag %q not allowed by the enrollment key", string(e.Tag))
}

// Is makes errors.Is(err, ErrTagNotAllowed) hold.
func (e *TagNotAllowedError) Is(target error) bool { return target == ErrTagNotAllowed }

// Store is the coordinator's persistent state. Implementations are safe for
// concurrent use. Every method that changes state does so in one
// transaction: it either fully happens or not at all.
type Store interface {
	// Init records the network's metadata on first use (trust domain, a
	// random ULA /48) and returns it. Later calls return the stored
	// metadata and fail if trustDomain differs from the stored one.
	Init(ctx context.Context, trustDomain string) (Meta, error)
	// Meta returns the network's metadata.
	Meta(ctx context.Context) (Meta, error)

	// CreateEnrollmentKey stores a new key with the hash of its secret.
	CreateEnrollmentKey(ctx context.Context, k EnrollmentKey, secretHash []byte) error
	// EnrollmentKeys lists every key, oldest first.
	EnrollmentKeys(ctx context.Context) ([]EnrollmentKey, error)
	// RevokeEnrollmentKey revokes a key at time at; revoking twice keeps
	// the first time. It returns the key as revoked, or ErrNotFound.
	RevokeEnrollmentKey(ctx context.Context, id string, at time.Time) (EnrollmentKey, error)

	// Enroll validates and consumes an enrollment key and creates a node,
	// atomically. Key problems return ErrInvalidKey, ErrKeyExpired,
	// ErrKeyRevoked, ErrKeyUsed or ErrTagNotAllowed; nothing changes then.
	Enroll(ctx context.Context, e Enrollment) (Node, error)

	// Node returns one node by ID, or ErrNotFound.
	Node(ctx context.Context, id wire.NodeID) (Node, error)
	// NodeByName returns one node by its unique name, or ErrNotFound.
	NodeByName(ctx context.Context, name string) (Node, error)
	// Nodes lists every node, sorted by name.
	Nodes(ctx context.Context) ([]Node, error)
	// DeleteNode removes a node; its addresses are retired (held from
	// reuse) and its ID is never issued again. Returns ErrNotFound.
	DeleteNode(ctx context.Context, id wire.NodeID, at time.Time) (Node, error)
	// RevokeNode deletes a node like DeleteNode and, in the same
	// transaction, records its WireGuard key and certificate key as
	// revoked: Enroll refuses them afterwards (ErrNodeKeyRevoked).
	// Returns ErrNotFound.
	RevokeNode(ctx context.Context, id wire.NodeID, at time.Time) (Node, error)
	// SetEndpoints replaces a node's endpoints and marks it seen at time
	// at. It reports whether the endpoints changed.
	SetEndpoints(ctx context.Context, id wire.NodeID, eps []netip.AddrPort, at time.Time) (bool, error)
	// SetCertKey records the public key of the node's newest certificate;
	// only certificates for this key authenticate the node afterwards.
	SetCertKey(ctx context.Context, id wire.NodeID, pub ed25519.PublicKey, at time.Time) error
	// Touch records that the node was seen at time at.
	Touch(ctx context.Context, id wire.NodeID, at time.Time) error

	// Snapshot returns every node and the netmap version they correspond
	// to, read in one transaction.
	Snapshot(ctx context.Context) (Snapshot, error)

	// CreateAPIToken stores an admin API token with the hash of its secret.
	CreateAPIToken(ctx context.Context, t APIToken, secretHash []byte) error
	// CreateBootstrapToken stores the bootstrap admin token and marks the
	// bootstrap as done, in one transaction. It returns false and stores
	// nothing if a bootstrap token was already created.
	CreateBootstrapToken(ctx context.Context, t APIToken, secretHash []byte) (bool, error)
	// APIToken returns a token with its secret hash, or ErrNotFound.
	APIToken(ctx context.Context, id string) (APIToken, []byte, error)
	// APITokens lists every token, oldest first, without secret hashes.
	APITokens(ctx context.Context) ([]APIToken, error)
	// RevokeAPIToken revokes a token at time at; revoking twice keeps the
	// first time. It returns the token as revoked, or ErrNotFound.
	RevokeAPIToken(ctx context.Context, id string, at time.Time) (APIToken, error)

	// SavePolicy stores source as the next policy version and bumps the
	// netmap version. With ifVersion > 0 it fails with ErrVersionConflict
	// unless ifVersion is the current version. The caller validated source.
	SavePolicy(ctx context.Context, source, author string, ifVersion int, at time.Time) (Policy, error)
	// CurrentPolicy returns the newest policy, or ErrNotFound if none was
	// ever saved.
	CurrentPolicy(ctx context.Context) (Policy, error)
	// Policy returns one version, or ErrNotFound.
	Policy(ctx context.Context, version int) (Policy, error)
	// Policies lists every version, newest first, without their sources.
	Policies(ctx context.Context) ([]Policy, error)

	// CreateAccessRequest stores a new request. A request created
	// approved (auto-approved by the policy) is a grant at once and bumps
	// the netmap version. Fails with ErrNotFound if the source node does
	// not exist, ErrAlreadyExists if the ID is taken.
	CreateAccessRequest(ctx context.Context, r AccessRequest) error
	// AccessRequest returns one request, or ErrNotFound.
	AccessRequest(ctx context.Context, id string) (AccessRequest, error)
	// AccessRequests lists requests in any of states (all when empty),
	// oldest first.
	AccessRequests(ctx context.Context, states ...string) ([]AccessRequest, error)
	// DecideAccess moves a request from d.From to d.To atomically. It
	// fails with ErrNotFound, a *StateError if the request is not in
	// d.From, or ErrPolicyChanged if d.PolicyVersion is set and no longer
	// current. Approving and revoking bump the netmap version.
	DecideAccess(ctx context.Context, d Decision) (AccessRequest, error)
	// ExpireGrants marks every approved request whose Expires is not
	// after now as expired, bumping the netmap version if any, and returns
	// them.
	ExpireGrants(ctx context.Context, now time.Time) ([]AccessRequest, error)
	// NextGrantExpiry returns the earliest Expires among approved
	// requests; false if there is none.
	NextGrantExpiry(ctx context.Context) (time.Time, bool, error)

	// AppendAudit appends one audit record in a transaction of its own,
	// for events that change nothing else (a refused API call).
	// Changes audit themselves: see audit.With.
	AppendAudit(ctx context.Context, e audit.Entry) error
	// AuditRecords lists audit records matching f, oldest first.
	AuditRecords(ctx context.Context, f AuditFilter) ([]audit.Record, error)
	// WalkAudit calls fn with every audit record in seq order, reading
	// them as a stream (bounded memory), until fn returns an error.
	WalkAudit(ctx context.Context, fn func(audit.Record) error) error

	// --- Identity: node expiry, quarantine, posture, tags (issue 4). ---
	// Each changes one node in one transaction with its audit record and
	// bumps the netmap version when some netmap changes; ErrNotFound if
	// the node does not exist.

	// SetNodeExpiry sets when node id's key expires (zero: never, which
	// ErrNeverExpiresUntagged refuses for an untagged node). An expiry not
	// after at expires the node at once; a later one revives an expired
	// node. It returns the node as changed.
	SetNodeExpiry(ctx context.Context, id wire.NodeID, expiry, at time.Time) (Node, error)
	// ExpireNodes marks every node whose key expiry is not after now as
	// expired, appending a system audit record for each and bumping the
	// netmap version if any, and returns them.
	ExpireNodes(ctx context.Context, now time.Time) ([]Node, error)
	// NextNodeExpiry returns the earliest key expiry among nodes not yet
	// marked expired; false if there is none.
	NextNodeExpiry(ctx context.Context) (time.Time, bool, error)
	// SetQuarantine quarantines (on) or releases node id; reason is kept
	// while quarantined. It reports whether the quarantine flag changed;
	// a call that changes nothing at all drops its audit record.
	SetQuarantine(ctx context.Context, id wire.NodeID, on bool, reason string, at time.Time) (bool, error)
	// SetPosture replaces node id's reported posture and marks it seen.
	// It reports whether the posture changed; an unchanged posture drops
	// the audit record and leaves the netmap version alone.
	SetPosture(ctx context.Context, id wire.NodeID, p *wire.Posture, at time.Time) (bool, error)
	// SetTags replaces node id's tags (sorted, without duplicates) and
	// reports whether they changed. Removing every tag of a node that
	// never expires fails with ErrNeverExpiresUntagged.
	SetTags(ctx context.Context, id wire.NodeID, tags []wire.Tag, at time.Time) (bool, error)
	// SetCert records node id's renewed certificate: its key (see
	// SetCertKey) and its expiry. It fails with ErrNodeExpired, changing
	// nothing, once the node's key expiry has passed.
	SetCert(ctx context.Context, id wire.NodeID, pub ed25519.PublicKey, expires, at time.Time) error
	// (end of identity methods)

	// --- Flow logs (issue 4). ---

	// InsertFlows stores one agent report's records (names resolved by
	// the caller) in one transaction: all or none.
	InsertFlows(ctx context.Context, recs []wire.FlowRecord) error
	// Flows lists the records matching f, newest first.
	Flows(ctx context.Context, f FlowFilter) ([]wire.FlowRecord, error)
	// PruneFlows deletes records received before `before` (none if zero)
	// and then, beyond the newest max records (no bound if max <= 0), the
	// oldest; it returns how many it deleted.
	PruneFlows(ctx context.Context, before time.Time, max int) (int64, error)
	// (end of flow methods)

	// --- Workload identity federation and ephemeral nodes (issue 5). ---
	// CreateTrustRule stores a new trust rule (ID, Created and the
	// validated request set; Uses is ignored). Fails with ErrAlreadyExists
	// if its ID or name is taken.
	CreateTrustRule(ctx context.Context, r wire.TrustRule) error
	// TrustRules lists every trust rule oldest first: the order in which
	// federated enrollment tries them.
	TrustRules(ctx context.Context) ([]wire.TrustRule, error)
	// DeleteTrustRule deletes a trust rule by ID or name and returns it,
	// or ErrNotFound. Nodes it enrolled stay.
	DeleteTrustRule(ctx context.Context, idOrName string) (wire.TrustRule, error)
	// NodeTrustRules maps every node enrolled under a trust rule to the
	// rule's name.
	NodeTrustRules(ctx context.Context) (map[wire.NodeID]string, error)
	// (end of federation methods)

	// --- Console accounts and sessions (issue 6). ---
	// Each change is one transaction with the audit record attached to
	// ctx (audit.With), if any.

	// CreateFirstConsoleAccount creates a, the first account, only while
	// no account exists; it returns false (storing and auditing nothing)
	// if one does.
	CreateFirstConsoleAccount(ctx context.Context, a ConsoleAccount) (bool, error)
	// CreateConsoleAccount creates an account; ErrAlreadyExists if the
	// user name is taken.
	CreateConsoleAccount(ctx context.Context, a ConsoleAccount) error
	// ConsoleAccount returns one account, or ErrNotFound.
	ConsoleAccount(ctx context.Context, username string) (ConsoleAccount, error)
	// ConsoleAccounts lists every account by user name.
	ConsoleAccounts(ctx context.Context) ([]ConsoleAccount, error)
	// SetConsoleAccountDisabled disables (ending its sessions) or enables
	// an account; ErrNotFound if it does not exist.
	SetConsoleAccountDisabled(ctx context.Context, username string, disabled bool) error
	// SetConsolePassword replaces an account's password hash and ends
	// every session of the account but the one whose ID hashes to keep
	// (none if nil); ErrNotFound if the account does not exist.
	SetConsolePassword(ctx context.Context, username, hash string, keep []byte) error
	// SetConsoleRole changes an account's role; ErrNotFound if it does
	// not exist.
	SetConsoleRole(ctx context.Context, username, role string) error
	// CreateConsoleSession stores a session by the hash of its ID.
	CreateConsoleSession(ctx context.Context, s ConsoleSession) error
	// ConsoleSession returns the session whose ID hashes to idHash, or
	// ErrNotFound. The caller checks its expiry.
	ConsoleSession(ctx context.Context, idHash []byte) (ConsoleSession, error)
	// TouchConsoleSession sets a session's LastSeen.
	TouchConsoleSession(ctx context.Context, idHash []byte, at time.Time) error
	// DeleteConsoleSession deletes a session (sign-out); ErrNotFound if
	// it does not exist.
	DeleteConsoleSession(ctx context.Context, idHash []byte) error
	// PruneConsoleSessions deletes sessions that expired by expiresBefore
	// or were last seen by seenBefore, and returns how many.
	PruneConsoleSessions(ctx context.Context, expiresBefore, seenBefore time.Time) (int64, error)
	// BindConsoleOIDC binds b's issuer and subject to the account
	// b.Username, replacing the account's earlier binding: ErrNotFound if
	// the account does not exist, ErrAlreadyExists if the identity is
	// bound to another account. (console_oidc.go)
	BindConsoleOIDC(ctx context.Context, b ConsoleOIDCBinding) error
	// UnbindConsoleOIDC removes the account's binding; ErrNotFound if it
	// has none.
	UnbindConsoleOIDC(ctx context.Context, username string) error
	// ConsoleAccountByOIDC returns the account bound to issuer and
	// subject (compared exactly), or ErrNotFound.
	ConsoleAccountByOIDC(ctx context.Context, issuer, subject string) (ConsoleAccount, error)
	// ConsoleOIDCBindings lists every binding by user name.
	ConsoleOIDCBindings(ctx context.Context) ([]ConsoleOIDCBinding, error)
	// (end of console methods)

	// Check runs the database's integrity and foreign-key checks.
	Check(ctx context.Context) error
	// Close releases the database.
	Close() error
}

// Meta is the network-wide state.
type Meta struct {
	// TrustDomain is the SPIFFE trust domain, fixed at first start.
	TrustDomain string
	// ULA is the network's IPv6 /48, random at first start.
	ULA netip.Prefix
	// NetmapVersion increases with every change to any node's netmap.
	NetmapVersion uint64
	// BootstrapDone reports that the bootstrap admin token was created.
	BootstrapDone bool
}

// EnrollmentKey describes an enrollment key. It never holds the secret.
type EnrollmentKey struct {
	ID          string
	Description string
	Reusable    bool
	Ephemeral   bool
	Tags        []wire.Tag
	Created     time.Time
	Expires     time.Time
	// Revoked is zero unless the key was revoked.
	Revoked time.Time
	// Uses counts the nodes the key enrolled.
	Uses int
	// CreatedByUser is the user of the API token that created the key;
	// untagged nodes it enrolls are owned by that user.
	CreatedByUser string
	// NodeExpiry is the key expiry of the nodes the key enrolls, from
	// their enrollment; zero means Enrollment.DefaultNodeExpiry.
	NodeExpiry time.Duration
	// NoNodeExpiry makes the nodes it enrolls never expire (tagged keys).
	NoNodeExpiry bool
	// MaxUses bounds Uses; zero means unbounded (reusable) or one.
	MaxUses int
}

// APIToken describes an admin API token. It never holds the secret.
type APIToken struct {
	ID string
	// User is the person or system the token acts for.
	User        string
	Scopes      []string
	Description string
	Created     time.Time
	// Expires is zero for a token that does not expire.
	Expires time.Time
	// Revoked is zero unless the token was revoked.
	Revoked time.Time
}

// Enrollment is one request to enroll a node.
type Enrollment struct {
	// NodeID is the ID to give the node; the caller generates it (see
	// NewNodeID) so it can sign the node's certificate before the
	// transaction. Enroll fails if the ID was ever issued before.
	NodeID wire.NodeID
	// KeyID and SecretHash identify and prove the enrollment key.
	KeyID      string
	SecretHash []byte
	// Hostname is the node's self-reported name; Name is derived from it.
	Hostname string
	// Tags requested; each must be on the key. Empty means all of the key's.
	Tags []wire.Tag
	// Ephemeral requests an ephemeral node; an ephemeral key forces it.
	Ephemeral    bool
	WireGuardKey wire.NodePublic
	CertKey      ed25519.PublicKey
	Endpoints    []netip.AddrPort
	Now          time.Time
	// DefaultNodeExpiry is the node's key lifetime when the enrollment
	// key sets none; zero means DefaultNodeKeyExpiry.
	DefaultNodeExpiry time.Duration
	// Posture is the node's reported posture; nil if it sent none.
	Posture *wire.Posture
	// CertExpires is the expiry of the certificate issued with the node.
	CertExpires time.Time
	// Federated, when set, authorizes the enrollment by a verified
	// workload identity token and its trust rule instead of an enrollment
	// key (see FederatedEnrollment); KeyID and SecretHash are then empty.
	Federated *FederatedEnrollment
}

// Node is one enrolled node as stored.
type Node struct {
	ID       wire.NodeID
	Name     string
	Hostname string
	// WireGuardKey is unique across nodes.
	WireGuardKey wire.NodePublic
	// CertKey is the public key of the node's current certificate.
	CertKey   ed25519.PublicKey
	IPv4      netip.Addr
	IPv6      netip.Addr
	Tags      []wire.Tag
	Ephemeral bool
	Created   time.Time
	LastSeen  time.Time
	Endpoints []netip.AddrPort
	// KeyID is the enrollment key that created the node.
	KeyID string
	// Owner is the user who created the enrollment key (see
	// EnrollmentKey.CreatedByUser), recorded for every node. Policy
	// counts it only for untagged nodes: see PolicyOwner.
	Owner string
	// KeyExpiry is when the node's enrollment expires; zero means never.
	KeyExpiry time.Time
	// Expired is set once KeyExpiry passed (ExpireNodes, SetNodeExpiry);
	// netmaps treat an expired node as absent.
	Expired bool
	// Quarantined nodes keep only the access of rules naming
	// "status:quarantined"; QuarantineReason says why.
	Quarantined      bool
	QuarantineReason string
	// Posture is the last reported posture; nil if none was reported.
	Posture *wire.Posture
	// CertExpires is the expiry of the node's current certificate; zero
	// if unknown (enrolled before it was recorded).
	CertExpires time.Time
	// TrustRule names the workload identity trust rule the node enrolled
	// under; "" for nodes enrolled with an enrollment key.
	TrustRule string
}

// PolicyOwner returns the node's owner as policy sees it: tagged nodes
// have no owner.
func (n Node) PolicyOwner() string {
	if len(n.Tags) > 0 {
		return ""
	}
	return n.Owner
}

// Wire returns the node as the protocol describes it.
func (n Node) Wire() wire.Node {
	return wire.Node{
		ID:        n.ID,
		Name:      n.Name,
		Key:       n.WireGuardKey,
		Addresses: []netip.Prefix{netip.PrefixFrom(n.IPv4, 32), netip.PrefixFrom(n.IPv6, 128)},
		Endpoints: n.Endpoints,
		Tags:      n.Tags,
		Ephemeral: n.Ephemeral,
		Created:   n.Created,
		KeyExpiry: n.KeyExpiry,
	}
}

// Snapshot is everything netmaps are computed from, at one netmap
// version: every node, the current policy and the active grants.
type Snapshot struct {
	Version uint64
	// Nodes are sorted by ID.
	Nodes []Node
	// Policy is the current policy; its Version is 0 if none was saved.
	Policy Policy
	// Grants are the approved access requests whose source node exists,
	// sorted by ID. Some may be past Expires until ExpireGrants runs.
	Grants []AccessRequest
}

// Policy is one saved version of the access policy.
type Policy struct {
	Version int
	// Source is the text as saved; empty in Policies' list.
	Source  string
	Created time.Time
	Author  string
}

// PortSpec is one protocol and port range of a grant; ports are zero for
// ICMP.
type PortSpec struct {
	Proto wire.Proto `json:"proto"`
	First uint16     `json:"first,omitempty"`
	Last  uint16     `json:"last,omitempty"`
}

// AccessRequest is a just-in-time access request and, once approved, the
// grant it became.
type AccessRequest struct {
	ID       string
	Src      wire.NodeID
	SrcName  string
	To       string // a service, "svc:db"
	Port     uint16 // 0: every port of the service
	Duration time.Duration
	Reason   string
	State    string // wire.AccessPending, ...
	Created  time.Time
	// Approver, Decided and DecisionReason record the approval or denial.
	Approver       string
	Decided        time.Time
	DecisionReason string
	// Expires and Ports are set on approval.
	Expires time.Time
	Ports   []PortSpec
	// PolicyVersion is the policy version the approval was checked against.
	PolicyVersion int
	// SrcPosture are the postures the allowing access rule requires of
	// the source, set on approval; the grant admits the source only while
	// it satisfies them.
	SrcPosture []string
	// RevokedBy, Revoked and RevokeReason record a revocation.
	RevokedBy    string
	Revoked      time.Time
	RevokeReason string
}

// Decision moves an access request from one state to another.
type Decision struct {
	ID   string
	From string // the state the request must be in
	To   string // wire.AccessApproved, AccessDenied or AccessRevoked
	// By is the approver, denier or revoker; Reason says why.
	By     string
	Reason string
	At     time.Time
	// Expires and Ports are required when approving.
	Expires time.Time
	Ports   []PortSpec
	// PolicyVersion, when non-zero, must be the current policy version.
	PolicyVersion int
	// SrcPosture is recorded when approving (AccessRequest.SrcPosture).
	SrcPosture []string
}

// HashSecret returns the stored form of an enrollment key or API token
// secret: its SHA-256. Secrets are 256-bit random, so a fast hash suffices.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}
