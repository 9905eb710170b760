package modelruntime

import (
	"runtime"
	"strconv"
	"testing"
)

func TestThreadEnv(t *testing.T) {
	cpus := runtime.NumCPU()
	tests := []struct {
		name     string
		replicas int
		env      map[string]string
		want     string // OMP_NUM_THREADS
	}{
		{"one replica gets every core", 1, nil, strconv.Itoa(cpus)},
		{"zero is treated as one", 0, nil, strconv.Itoa(cpus)},
		{"more replicas than cores get one thread each", cpus * 4, nil, "1"},
		{"the deployment's own setting wins", 1, map[string]string{"OMP_NUM_THREADS": "7", "OTHER": "x"}, "7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ThreadEnv(tt.replicas, tt.env)
			if got["OMP_NUM_THREADS"] != tt.want {
				t.Errorf("OMP_NUM_THREADS = %q, want %q", got["OMP_NUM_THREADS"], tt.want)
			}
			if got["OPENBLAS_NUM_THREADS"] == "" || got["MKL_NUM_THREADS"] == "" {
				t.Errorf("OpenBLAS/MKL caps missing: %v", got)
			}
			for k, v := range tt.env {
				if got[k] != v {
					t.Errorf("%s = %q, want the given %q", k, got[k], v)
				}
			}
		})
	}
	if in := map[string]string{"A": "1"}; len(ThreadEnv(2, in)) > 0 && len(in) != 1 {
		t.Errorf("ThreadEnv changed its argument: %v", in)
	}
}
