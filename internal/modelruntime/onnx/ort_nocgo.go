//go:build !cgo

package onnx

import (
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Init always fails: ONNX Runtime needs cgo.
func Init(libPath string) error { return ErrNoCgo }

func initialized() bool { return false }

type session struct {
	inputs, outputs []workerproto.Column
}

func openSession(string, Options) (*session, []string, error) { return nil, nil, ErrNoCgo }

func (s *session) run([]workerproto.Tensor) ([]workerproto.Tensor, error) { return nil, ErrNoCgo }

func (s *session) close() error { return nil }

func (s *session) terminate() {}

// HeapInUse is unknown without cgo.
func HeapInUse() (int64, bool) { return 0, false }

// ReleaseFreeMemory has nothing to release without cgo.
func ReleaseFreeMemory() {}
