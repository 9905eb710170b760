package onnx

import (
	"errors"

	"github.com/slipway-ml/slipway/internal/inference"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// Handler answers a replica's calls with a Model: tensor frames as they come, JSON bodies through the ONNX
// worker's codec (inference.DecodeWorkerJSON and EncodeWorkerJSON). Errors are *workerproto.ModelError:
// ValueError for a request that does not fit the model, RuntimeError for a failure of the model itself. The
// worker process (`slipway worker onnx`) and the server's in-process replicas both answer through it, so the two
// isolations give the same answers and the same errors.
type Handler struct {
	Model *Model
}

// PredictTensors runs the model on a batch of columns.
func (h *Handler) PredictTensors(in []workerproto.Tensor) ([]workerproto.Tensor, error) {
	out, err := h.Model.Predict(in)
	if err != nil {
		return nil, modelError(err)
	}
	return out, nil
}

// PredictJSON runs the model on a JSON body ({"inputs": {...}} or {"data": [...]}) and answers {"outputs": {...}}.
func (h *Handler) PredictJSON(body []byte) ([]byte, error) {
	in, err := inference.DecodeWorkerJSON(body, h.Model.Inputs())
	if err != nil {
		return nil, &workerproto.ModelError{Message: err.Error(), Type: "ValueError"}
	}
	out, err := h.Model.Predict(in)
	if err != nil {
		return nil, modelError(err)
	}
	b, err := inference.EncodeWorkerJSON(out)
	if err != nil {
		return nil, &workerproto.ModelError{Message: err.Error(), Type: "RuntimeError"}
	}
	return b, nil
}

// modelError gives request errors the type ValueError and others RuntimeError.
func modelError(err error) error {
	var ie *InputError
	if errors.As(err, &ie) {
		return &workerproto.ModelError{Message: err.Error(), Type: "ValueError"}
	}
	return &workerproto.ModelError{Message: err.Error(), Type: "RuntimeError"}
}
