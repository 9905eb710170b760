package modelruntime

import (
	"context"
	"io"

	"github.com/slipway-ml/slipway"
)

// ProcessSpec is what one replica runs, built by Runtimes.ReplicaSpec and carried out by an Engine.
type ProcessSpec struct {
	// Runtime is the model's runtime (slipway.RuntimePython or slipway.RuntimeONNX). An engine that does not
	// run the command below (an in-process ONNX session, a pod whose image is chosen per runtime) goes by it.
	Runtime string
	// Path, Args and Env are the command on this machine. Env is the child's whole environment: the server's
	// own variables (its tokens) never reach user code.
	Path string
	Args []string
	Env  []string
	// Dir holds the model's files and is the replica's working directory. Files lists them, relative to Dir,
	// with their digests: what an engine that runs the replica elsewhere must copy or mount.
	Dir   string
	Files []slipway.File
	// Scheduling is applied once the replica is ready (loading the model runs in the class inherited from the
	// server).
	Scheduling Scheduling
	// Deployment and Version name what the replica serves, for engines that place or find replicas by it
	// (RemoteEngine takes an announced worker of this deployment and version). Empty for registration checks.
	Deployment string
	Version    int
	// Isolation is the deployment's (slipway.IsolationInProcess: Runtimes.Start runs it on the in-process
	// engine); empty for registration checks, which always run the model as a process.
	Isolation string
	// Resources are what the replica may use (nil: not limited). The local engine applies the memory as an
	// address-space rlimit; the kubernetes engine sets the container's requests and limits.
	Resources *slipway.Resources
}

// LogFunc receives each line a replica writes to stderr.
type LogFunc func(line string)

// Engine is where replicas run: the one seam between "what to run" (a ProcessSpec) and "how and where".
// LocalEngine, a child process of the server, is the default (Config.Engine). An engine for a cluster (a
// Kubernetes pod, a Nomad task) or one that serves ONNX models inside the server is another implementation of
// this interface, set in Config.Engine: the Replica client, the pools and the registration checks above it do
// not change.
type Engine interface {
	// Start starts spec and returns its connection without waiting for the model to load (the Replica waits
	// for its hello). ctx bounds the start itself, not the replica's life: the replica runs until it exits,
	// its input is closed or Kill is called. stderr, if not nil, receives each line the replica writes to its
	// stderr (or an engine's equivalent log), from one goroutine, every line before Done is closed.
	Start(ctx context.Context, spec ProcessSpec, stderr LogFunc) (Conn, error)
}

// Conn is a started replica as its engine hands it back.
//
// Read and Write carry docs/worker-protocol.md: Read returns the frames the replica writes (a process's
// stdout), Write sends it frames (its stdin). Close ends the replica's input; the replica exits when it reads
// EOF. Calls to Read are not concurrent, nor are calls to Write.
type Conn interface {
	io.ReadWriteCloser
	// Ready is called once the replica has said hello: the engine applies what must not slow the model's
	// load (the local engine moves the process under spec.Scheduling). An error means the replica cannot
	// serve as asked; the caller then kills it.
	Ready() error
	// Done is closed once the replica has exited and its stderr lines have been delivered.
	Done() <-chan struct{}
	// ExitErr is how the replica ended (nil for a clean exit); valid once Done is closed.
	ExitErr() error
	// Kill ends the replica at once, with everything it started; a Read or Write in progress then returns (a
	// call past its deadline is cancelled this way) and Done is closed. It may be called at any time, more
	// than once, also after the replica has exited.
	Kill()
	// PID is the replica's process id on this machine, 0 when it is not a local process.
	PID() int
}
