package kubereplica

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestObjectNameIsAShortDNSLabel(t *testing.T) {
	long := strings.Repeat("a", 30) + "." + strings.Repeat("b", 33) // 64 characters, the longest valid name
	for name, want := range map[string]string{
		"churn-api": "slipway-churn-api-v3",
		"churn_api": "",
		"churn.api": "",
		long:        "",
	} {
		got := ObjectName(name, 3)
		if want != "" && got != want {
			t.Errorf("ObjectName(%q) = %q, want %q", name, got, want)
		}
		// The pods' names add the ReplicaSet's hash and a suffix (17 characters): still a DNS label.
		if errs := validation.IsDNS1123Label(got + "-0123456789-abcde"); len(errs) > 0 {
			t.Errorf("ObjectName(%q) = %q: its pods' names are not DNS labels: %v", name, got, errs)
		}
		if !strings.HasSuffix(got, "-v3") || !strings.HasPrefix(got, "slipway-") {
			t.Errorf("ObjectName(%q) = %q", name, got)
		}
	}
	// Names that differ only in what is replaced do not collide.
	if ObjectName("churn_api", 1) == ObjectName("churn.api", 1) || ObjectName("churn_api", 1) == ObjectName("churn-api", 1) {
		t.Error("names that differ only in '.', '_' or '-' share an object name")
	}
	if v := labelValue(long); len(v) > 63 || len(validation.IsValidLabelValue(v)) > 0 {
		t.Errorf("labelValue(%q) = %q is not a label value", long, v)
	}
}
