package worker

import (
	"fmt"

	"github.com/slipway-ml/slipway/internal/procsched"
)

// batchScheduling puts every thread of process pid under SCHED_BATCH. A network worker applies it to itself once
// its model is loaded, and to each Python child once it has said hello: the worker is the replica here, with no
// HTTP front end of the server's on its machine to give way to (docs/architecture.md, "The server under SCHED_BATCH").
func batchScheduling(pid int) error {
	if err := procsched.Set(pid, procsched.Batch); err != nil {
		return fmt.Errorf("%w (run the worker with --scheduling normal)", err)
	}
	return nil
}
