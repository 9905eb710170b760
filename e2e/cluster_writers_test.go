package e2e

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// 50 concurrent API writers spread over two servers. Each creates a token, moves an alias of its own and adds
// one to the deployment's max_queue by a read-modify-write (GET, then PATCH with the revision read; a 409
// means somebody else wrote first: read again). Nothing is lost: 50 tokens, 50 aliases, max_queue + 50; and
// no client ever sees a deadlock, a serialization failure or a 5xx.
func TestClusterConcurrentWritersLoseNothing(t *testing.T) {
	a, b, _ := twoClusterMembers(t)
	pushExamples(t, a)
	deploy(t, a, "churn", "--model", "churn@champion")
	ctx := ctxFor(t, 5*time.Minute)
	start, err := a.Client().GetDeployment(ctx, "churn")
	if err != nil {
		t.Fatal(err)
	}

	const writers = 50
	var conflicts atomic.Int64
	errs := make(chan error, 3*writers)
	var wg sync.WaitGroup
	for i := range writers {
		c := []*client.Client{a.Client(), b.Client()}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.CreateToken(ctx, fmt.Sprintf("writer-%d", i), slipway.RoleViewer); err != nil {
				errs <- fmt.Errorf("writer %d: token: %w", i, err)
			}
			if _, err := c.SetAlias(ctx, "churn", fmt.Sprintf("w%d", i), 1); err != nil {
				errs <- fmt.Errorf("writer %d: alias: %w", i, err)
			}
			for {
				d, err := c.GetDeployment(ctx, "churn")
				if err != nil {
					errs <- fmt.Errorf("writer %d: read the deployment: %w", i, err)
					return
				}
				q, rev := d.MaxQueue+1, d.Revision
				_, err = c.UpdateDeployment(ctx, "churn", client.DeploymentSpec{MaxQueue: &q, Revision: &rev})
				var apiErr *client.Error
				if errors.As(err, &apiErr) && apiErr.Status == 409 && strings.Contains(apiErr.Problem.Detail, "read it again and retry") {
					conflicts.Add(1)
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d: update the deployment: %w", i, err)
				}
				return
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err) // a deadlock or serialization failure, a 5xx: anything but the expected 409 reached a client
	}
	t.Logf("%d conflicts answered 409 and retried by the writers", conflicts.Load())

	tokens, err := b.Client().ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, tok := range tokens {
		if strings.HasPrefix(tok.Name, "writer-") {
			named++
		}
	}
	m, err := b.Client().GetModel(ctx, "churn")
	if err != nil {
		t.Fatal(err)
	}
	aliases := 0
	for name := range m.Aliases {
		if strings.HasPrefix(name, "w") {
			aliases++
		}
	}
	d, err := b.Client().GetDeployment(ctx, "churn")
	if err != nil {
		t.Fatal(err)
	}
	if named != writers || aliases != writers || d.MaxQueue != start.MaxQueue+writers {
		t.Fatalf("after %d writers: %d tokens, %d aliases, max_queue %d (was %d): an update was lost", writers, named, aliases, d.MaxQueue, start.MaxQueue)
	}
	if d.Revision < start.Revision+writers {
		t.Fatalf("revision %d after %d updates from %d", d.Revision, writers, start.Revision)
	}
}
