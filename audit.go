package slipway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// AuditEntry is one line of the audit log: an API call that changed state or was refused, or a server event
// (start, stop). Entries are append-only and hash-chained: Hash covers the entry and the previous entry's
// hash, so editing, removing or reordering a stored entry breaks the chain (VerifyAuditChain).
type AuditEntry struct {
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	TokenID   string    `json:"token_id,omitempty"`
	TokenName string    `json:"token_name,omitempty"`
	Role      Role      `json:"role,omitempty"`
	// Project is the project the call worked in (empty for server events and calls refused before it was
	// known).
	Project string `json:"project,omitempty"`
	// Action is the API operation (its OpenAPI operationId, e.g. "createDeployment") or a server event
	// ("server.start", "server.stop", "audit.dropped").
	Action string `json:"action"`
	Method string `json:"method,omitempty"`
	Route  string `json:"route,omitempty"` // the route pattern, e.g. "POST /api/v1/deployments/{name}/activate"
	// Target is what the call acted on, as an API path below /api/v1/ ("deployments/churn",
	// "models/churn/versions/3"); for creations, the created resource.
	Target    string          `json:"target,omitempty"`
	Status    int             `json:"status,omitempty"`
	Problem   string          `json:"problem,omitempty"` // the problem code of a refused or failed call
	RequestID string          `json:"request_id,omitempty"`
	Client    string          `json:"client,omitempty"` // the client's address
	Detail    json.RawMessage `json:"detail,omitempty"` // event data, e.g. the server's configuration, secrets redacted
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

// ComputeHash is the entry's chain hash: SHA-256 over PrevHash and the entry's fields in a fixed order.
func (e *AuditEntry) ComputeHash() string {
	fields := []any{e.Seq, e.Time.UTC().Format(time.RFC3339Nano), e.TokenID, e.TokenName, string(e.Role), e.Action,
		e.Method, e.Route, e.Target, e.Status, e.Problem, e.RequestID, e.Client, string(e.Detail)}
	if e.Project != "" { // appended only when set: entries written before projects keep their hashes
		fields = append(fields, "project", e.Project)
	}
	b, err := json.Marshal(fields) // of strings and ints: cannot fail
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(append([]byte(e.PrevHash+"\n"), b...))
	return hex.EncodeToString(sum[:])
}

// AuditFilter selects audit entries. Zero fields match everything.
type AuditFilter struct {
	From, To time.Time
	Actor    string // a token's name or id
	Target   string // the target or a prefix of it ending at a path segment ("deployments/churn")
	Action   string // an operationId or event name
	Project  string // the project calls worked in
	After    int64  // entries with a larger Seq only (a cursor)
	Limit    int    // at most this many (0: no limit)
}

// AuditStore keeps the audit log.
type AuditStore interface {
	// AppendAudit numbers e after the last entry, chains it to it (PrevHash, Hash) and stores it, atomically
	// with respect to other appends.
	AppendAudit(ctx context.Context, e *AuditEntry) error
	// ScanAudit calls fn on the entries that match f, in Seq order, without holding them all in memory.
	ScanAudit(ctx context.Context, f AuditFilter, fn func(*AuditEntry) error) error
	// DeleteAuditBefore removes the entries older than t, but never the newest one (the chain goes on from it).
	DeleteAuditBefore(ctx context.Context, t time.Time) (int64, error)
}

// AuditVerification is the outcome of checking the chain.
type AuditVerification struct {
	OK      bool  `json:"ok"`
	Entries int64 `json:"entries"`
	// FirstSeq and Anchor are where the checked chain starts: Anchor is the PrevHash of its first entry, empty
	// when the log starts at its beginning, or the hash of the last entry retention removed.
	FirstSeq int64  `json:"first_seq,omitempty"`
	Anchor   string `json:"anchor,omitempty"`
	// LastSeq and Head are the newest entry: keep Head elsewhere to detect a later removal of the tail.
	LastSeq int64  `json:"last_seq,omitempty"`
	Head    string `json:"head,omitempty"`
	// BrokenAt is the first entry that does not fit the chain, and Reason says how.
	BrokenAt int64  `json:"broken_at,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// AuditChainVerifier checks entries fed in Seq order. The zero value is ready.
type AuditChainVerifier struct {
	result AuditVerification
	prev   *AuditEntry
}

// Add checks the next entry; once the chain is broken, later entries are not checked.
func (v *AuditChainVerifier) Add(e *AuditEntry) {
	r := &v.result
	if r.BrokenAt != 0 {
		return
	}
	r.Entries++
	if v.prev == nil {
		r.FirstSeq, r.Anchor = e.Seq, e.PrevHash
	}
	switch {
	case v.prev != nil && e.Seq != v.prev.Seq+1:
		r.BrokenAt, r.Reason = e.Seq, fmt.Sprintf("entry %d follows entry %d: entries between them were removed", e.Seq, v.prev.Seq)
	case v.prev != nil && e.PrevHash != v.prev.Hash:
		r.BrokenAt, r.Reason = e.Seq, fmt.Sprintf("entry %d does not chain to entry %d: one of them was altered", e.Seq, v.prev.Seq)
	case e.Hash != e.ComputeHash():
		r.BrokenAt, r.Reason = e.Seq, fmt.Sprintf("entry %d does not match its hash: it was altered after it was written", e.Seq)
	}
	if r.BrokenAt == 0 {
		r.LastSeq, r.Head = e.Seq, e.Hash
	}
	v.prev = e
}

// Result is the verification of the entries added so far.
func (v *AuditChainVerifier) Result() AuditVerification {
	r := v.result
	r.OK = r.BrokenAt == 0
	return r
}
