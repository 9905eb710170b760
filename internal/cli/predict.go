package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// Prediction protocols, as --protocol names them.
const (
	protoInvocations = "invocations"
	protoPredict     = "predict"
	protoV2          = "v2"
)

// mlflowKeys are the top-level keys of an MLflow scoring request.
var mlflowKeys = []string{"dataframe_split", "dataframe_records", "instances", "inputs"}

func (a *app) predictCommand() *cobra.Command {
	var data, protocol string
	cmd := &cobra.Command{
		Use:   "predict NAME --data FILE [--protocol invocations|predict|v2]",
		Short: "Send a prediction request to a deployment and print the answer",
		Long: `Send FILE (a .json or .csv file, or - for stdin) to deployment NAME and print the answer on stdout.

The protocol is chosen from the data unless --protocol says:
  - CSV (a .csv file, or stdin that is not JSON) goes to the MLflow invocations endpoint as text/csv;
  - JSON with a top-level dataframe_split, dataframe_records, instances or inputs key goes to invocations
    (MLflow scoring), except an "inputs" list of tensors ({"name", "shape", "datatype", "data"}), which is an
    Open Inference Protocol v2 request;
  - any other JSON goes to predict, which hands it to the model's predict() as is.

The token needs role predict, editor or admin.`,
		Example: `  slipway predict churn-api --data examples/sklearn-churn/input.json
  slipway predict churn-api --data rows.csv
  echo '{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]}' | slipway predict churn-api --data -`,
		Args: exactArgs(1, "one deployment name"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := slipway.ValidateName("deployment", name); err != nil {
				return err
			}
			switch protocol {
			case "", protoInvocations, protoPredict, protoV2:
			default:
				return fmt.Errorf("invalid --protocol %q: use invocations, predict or v2", protocol)
			}
			body, csv, err := a.readPredictData(data)
			if err != nil {
				return err
			}
			if csv && protocol != "" && protocol != protoInvocations {
				return fmt.Errorf("%s is CSV: only --protocol invocations (MLflow) takes CSV; send JSON to %s", dataName(data), protocol)
			}
			if protocol == "" {
				protocol = detectProtocol(body, csv)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var resp *client.PredictResponse
			switch {
			case csv:
				resp, err = c.Invocations(cmd.Context(), name, body, "text/csv")
			case protocol == protoInvocations:
				resp, err = c.Invocations(cmd.Context(), name, body, "application/json")
			case protocol == protoV2:
				resp, err = c.InferV2(cmd.Context(), name, body)
			default:
				resp, err = c.Predict(cmd.Context(), name, body)
			}
			if err != nil {
				return err
			}
			return a.printPrediction(resp, protocol)
		}),
	}
	cmd.Flags().StringVarP(&data, "data", "d", "", "request body: a .json or .csv file, or - for stdin")
	cmd.Flags().StringVar(&protocol, "protocol", "", "invocations (MLflow), predict (OCI) or v2 (Open Inference Protocol); default: from the data")
	requireFlags(cmd, "data")
	return cmd
}

func dataName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}

// readPredictData reads the request body and says whether it is CSV: by extension for .json and .csv
// files, else by content (JSON if it parses).
func (a *app) readPredictData(path string) (body []byte, csv bool, err error) {
	if path == "-" {
		in := a.stdin
		if in == nil {
			in = os.Stdin
		}
		body, err = io.ReadAll(in)
	} else {
		body, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, false, fmt.Errorf("read --data: %w", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, false, fmt.Errorf("%s is empty: give a JSON document or CSV with a header line", dataName(path))
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return body, true, nil
	case ".json":
		if err := checkJSON(body); err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return body, false, nil
	}
	return body, !json.Valid(body), nil
}

// checkJSON says where a document stops being JSON.
func checkJSON(b []byte) error {
	var v any
	err := json.Unmarshal(b, &v)
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("not valid JSON at byte %d: %v", syn.Offset, err)
	} else if err != nil {
		return fmt.Errorf("not valid JSON: %v", err)
	}
	return nil
}

// detectProtocol picks the endpoint for a body: see the command's help.
func detectProtocol(body []byte, csv bool) string {
	if csv {
		return protoInvocations
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return protoPredict // a list or a scalar: the model's own format
	}
	if isV2Inputs(obj["inputs"]) {
		return protoV2
	}
	for _, k := range mlflowKeys {
		if _, ok := obj[k]; ok {
			return protoInvocations
		}
	}
	return protoPredict
}

// isV2Inputs reports whether raw is a non-empty list of OIP v2 tensors: objects with name, shape, datatype
// and data. (MLflow's "inputs" is a list of rows or a dict of columns: never such objects.)
func isV2Inputs(raw json.RawMessage) bool {
	var inputs []map[string]json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &inputs) != nil || len(inputs) == 0 {
		return false
	}
	for _, in := range inputs {
		for _, k := range []string{"name", "shape", "datatype", "data"} {
			if _, ok := in[k]; !ok {
				return false
			}
		}
	}
	return true
}

// printPrediction writes the answer on stdout, indented when it is JSON, and which version and replica
// answered on stderr when that is a terminal.
func (a *app) printPrediction(resp *client.PredictResponse, protocol string) error {
	var buf bytes.Buffer
	if json.Indent(&buf, resp.Body, "", "  ") == nil {
		buf.WriteByte('\n')
	} else { // not JSON: as it came, ending its line
		buf.Reset()
		buf.Write(resp.Body)
		if len(resp.Body) > 0 && resp.Body[len(resp.Body)-1] != '\n' {
			buf.WriteByte('\n')
		}
	}
	if _, err := a.stdout.Write(buf.Bytes()); err != nil {
		return err
	}
	if _, ok := a.stderrTerminal(); ok {
		fmt.Fprintf(a.stderr, "(%s: version %s, replica %s, request id %s)\n", protocol, orDash(resp.ModelVersion),
			orDash(resp.Replica), orDash(resp.RequestID))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
