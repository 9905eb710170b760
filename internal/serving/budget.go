package serving

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-ml/slipway/internal/modelruntime"
)

// MemoryBudget bounds the memory held by the loaded replicas of the pools attached to it (the server's
// deployments, their canaries and shadows). Before a replica loads, the budget makes room for it: while the
// replicas loaded, plus the loads under way, plus the newcomer's expected size exceed the limit, the least
// recently used idle replica of any attached pool is unloaded; its pool is then at zero replicas (or one fewer)
// and keeps its URL, and its next request starts a replica again, as for a deployment scaled to zero. A busy
// replica is never unloaded: when only busy ones are left, the newcomer loads over the budget, and the log
// says so.
//
// Sizes are measured, not declared (modelruntime.Replica.MemoryBytes): a process's resident set read from
// /proc when room is made, an in-process session's C heap measured at its load. The newcomer's expected size is
// what the previous replica of its pool measured, else its model files' size; once it has loaded, its
// measured size counts, and the budget unloads more if the guess was short.
type MemoryBudget struct {
	limit int64
	log   *slog.Logger

	mu       sync.Mutex // one admission at a time: two loads never count the same free room
	pools    map[*Pool]struct{}
	reserved int64 // loads under way, by their expected size

	unloads       atomic.Int64
	unloadedBytes atomic.Int64
}

// DefaultMemoryBudget is the budget when none is given: half the memory the server can use, the machine's
// (MemTotal) or its cgroup's limit (memory.max, cgroup v2) when that is lower. Half leaves the other half to the
// server itself, the page cache and the requests' buffers. from says which figure it halved.
func DefaultMemoryBudget() (bytes int64, from string, err error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, "", fmt.Errorf("read the machine's memory: %w", err)
	}
	var total int64
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb int64
			if _, err := fmt.Sscan(rest, &kb); err != nil {
				return 0, "", fmt.Errorf("read MemTotal in /proc/meminfo: %w", err)
			}
			total, from = kb<<10, "MemTotal"
		}
	}
	if total == 0 {
		return 0, "", errors.New("no MemTotal in /proc/meminfo: give --model-memory-budget")
	}
	if raw, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil { // "max": no limit
		if n, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64); err == nil && n < total {
			total, from = n, "the cgroup's memory.max"
		}
	}
	return total / 2, from, nil
}

// NewMemoryBudget returns a budget of limit bytes (> 0).
func NewMemoryBudget(limit int64, log *slog.Logger) *MemoryBudget {
	return &MemoryBudget{limit: limit, log: log, pools: map[*Pool]struct{}{}}
}

// Limit is the budget in bytes.
func (b *MemoryBudget) Limit() int64 { return b.limit }

// Unloads is how many idle replicas were unloaded to make room, and the bytes they held.
func (b *MemoryBudget) Unloads() (count, bytes int64) {
	return b.unloads.Load(), b.unloadedBytes.Load()
}

// Loaded is the measured memory of the loaded replicas (and of the loads under way, by their expected size).
func (b *MemoryBudget) Loaded() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.loadedLocked()
}

func (b *MemoryBudget) attach(p *Pool) {
	b.mu.Lock()
	b.pools[p] = struct{}{}
	b.mu.Unlock()
}

func (b *MemoryBudget) detach(p *Pool) {
	b.mu.Lock()
	delete(b.pools, p)
	b.mu.Unlock()
}

func (b *MemoryBudget) loadedLocked() int64 {
	total := b.reserved
	for p := range b.pools {
		total += p.loadedBytes()
	}
	return total
}

// admit makes room for a replica of p expected to take want bytes and reserves them. The returned function ends
// the reservation with the replica's measured size (0: it did not load) and, if the replica came out larger
// than expected, unloads more to stay within the limit.
func (b *MemoryBudget) admit(p *Pool, want int64) (done func(measured int64)) {
	b.mu.Lock()
	b.makeRoomLocked(p, want)
	b.reserved += want
	b.mu.Unlock()
	return func(measured int64) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.reserved -= want
		if measured > want {
			// The replica is not in its pool yet (its caller adds it): count it here while making room.
			b.makeRoomLocked(p, measured)
		}
	}
}

// makeRoomLocked unloads least recently used idle replicas until want more bytes fit in the limit.
func (b *MemoryBudget) makeRoomLocked(p *Pool, want int64) {
	loaded := b.loadedLocked()
	if loaded+want <= b.limit {
		return
	}
	for _, c := range b.idleReplicasLocked() {
		if loaded+want <= b.limit {
			return
		}
		if !c.pool.unloadIdle(c.slot, c.rep) {
			continue // taken by a request meanwhile
		}
		loaded -= c.bytes
		b.unloads.Add(1)
		b.unloadedBytes.Add(c.bytes)
		b.log.Info("model memory budget: unloaded an idle replica", "deployment", c.pool.name, "replica", c.slot.id,
			"bytes", c.bytes, "idle", time.Since(c.lastUsed).Round(time.Millisecond), "for", p.name, "needed", want,
			"loaded_bytes", loaded, "budget", b.limit)
	}
	if loaded+want > b.limit {
		b.log.Warn("model memory budget exceeded: no idle replica left to unload", "for", p.name, "needed", want,
			"loaded_bytes", loaded, "budget", b.limit)
	}
}

// candidate is an idle replica that could be unloaded.
type candidate struct {
	pool     *Pool
	slot     *slot
	rep      *modelruntime.Replica
	bytes    int64
	lastUsed time.Time
}

// idleReplicasLocked lists the idle replicas of every attached pool, least recently used first.
func (b *MemoryBudget) idleReplicasLocked() []candidate {
	var out []candidate
	for p := range b.pools {
		out = append(out, p.idleCandidates()...)
	}
	slices.SortFunc(out, func(x, y candidate) int {
		return cmp.Or(x.lastUsed.Compare(y.lastUsed), cmp.Compare(x.slot.id, y.slot.id))
	})
	return out
}

// SetBudget puts the pool's replicas under b; expected is the size to expect of its first replica (its model
// files' size) until one has been measured. Call it before the pool's first Rollout.
func (p *Pool) SetBudget(b *MemoryBudget, expected int64) {
	p.expected.Store(max(expected, 1))
	p.budget = b
	b.attach(p)
}

// loadedBytes is the measured memory of the pool's replicas (a process's resident set is read now).
func (p *Pool) loadedBytes() int64 {
	p.mu.Lock()
	loaded := make([]candidate, 0, len(p.slots))
	for _, s := range p.slots {
		if s.rep != nil && s.state != stateStopped && s.state != stateDead {
			loaded = append(loaded, candidate{rep: s.rep, bytes: s.bytes})
		}
	}
	p.mu.Unlock()
	var total int64
	for _, c := range loaded {
		total += memory(c.rep, c.bytes)
	}
	return total
}

// memory is what a replica holds: read again for a process (it grows as it serves), the figure measured at
// load (measured) for an in-process session.
func memory(rep *modelruntime.Replica, measured int64) int64 {
	if rep.InProcess() {
		return measured
	}
	return rep.MemoryBytes()
}

// idleCandidates lists the pool's idle READY replicas with their last use.
func (p *Pool) idleCandidates() []candidate {
	p.mu.Lock()
	out := make([]candidate, 0, len(p.free))
	for _, s := range p.free {
		if s.inflight > 0 {
			continue
		}
		out = append(out, candidate{pool: p, slot: s, rep: s.rep, bytes: s.bytes, lastUsed: s.lastUsed})
	}
	p.mu.Unlock()
	for i := range out {
		out[i].bytes = memory(out[i].rep, out[i].bytes)
	}
	return out
}

// unloadIdle stops s if it is still idle and still runs rep, and waits until it has exited (its memory is
// free). It reports whether it did.
func (p *Pool) unloadIdle(s *slot, rep *modelruntime.Replica) bool {
	p.mu.Lock()
	if s.rep != rep || s.state != stateReady || s.inflight > 0 || !slices.Contains(p.free, s) {
		p.mu.Unlock()
		return false
	}
	p.retireLocked(s) // idle: stops now
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.StopGrace+time.Second)
	defer cancel()
	select {
	case <-rep.Done():
	case <-ctx.Done():
	}
	return true
}

// admitToBudget makes room for one more replica of the pool (nothing without a budget); done records what it
// measured.
func (p *Pool) admitToBudget() (done func(*slot)) {
	b := p.budget
	if b == nil {
		return func(*slot) {}
	}
	end := b.admit(p, p.expected.Load())
	return func(s *slot) {
		var measured int64
		if s.rep != nil { // the slot is not shared yet: its fields are ours
			s.bytes = s.rep.MemoryBytes()
			measured = s.bytes
			p.expected.Store(max(measured, 1))
		}
		end(measured)
	}
}
