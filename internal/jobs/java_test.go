package jobs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

// TestJavaEntrypoints runs a main class and the same class packed as a runnable jar (skipped without a JDK).
func TestJavaEntrypoints(t *testing.T) {
	if _, err := exec.LookPath("javac"); err != nil {
		t.Skip("no javac")
	}
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "com", "example"), 0o755)
	os.WriteFile(filepath.Join(src, "com", "example", "Train.java"), []byte(`package com.example;
public class Train { public static void main(String[] a) { System.out.println("java says " + String.join(",", a)); } }`), 0o644)
	if out, err := exec.Command("javac", "-d", src, filepath.Join(src, "com", "example", "Train.java")).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v %s", err, out)
	}
	os.Remove(filepath.Join(src, "com", "example", "Train.java"))
	os.WriteFile(filepath.Join(src, "manifest.txt"), []byte("Main-Class: com.example.Train\n"), 0o644)
	jar := filepath.Join(t.TempDir(), "train.jar")
	if out, err := exec.Command("jar", "cfm", jar, filepath.Join(src, "manifest.txt"), "-C", src, "com").CombinedOutput(); err != nil {
		t.Fatalf("jar: %v %s", err, out)
	}
	e := newEnv(t)
	ctx := context.Background()
	cases := []struct {
		name, entry, file string
		kind              string
	}{
		{"jar", "train.jar", jar, slipway.EntryJar},
		{"class-in-jar", "com.example.Train", jar, slipway.EntryJavaClass}, // java -cp .:*:lib/* finds it in train.jar
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j, err := e.s.CreateJob(ctx, slipway.JobSpec{Name: tc.name, Entrypoint: tc.entry, Args: []string{"x", "y"}}, Upload{Path: tc.file, Filename: "train.jar"}, "t")
			if err != nil {
				t.Fatal(err)
			}
			if j.Kind != tc.kind {
				t.Errorf("kind = %s, want %s", j.Kind, tc.kind)
			}
			r := e.wait(t, e.run(t, tc.name, RunInput{}).ID)
			if log := e.logs(t, r.ID); r.State != slipway.RunSucceeded || !strings.Contains(log, "stdout java says x,y") {
				t.Errorf("run = %s %q\n%s", r.State, r.Reason, log)
			}
		})
	}
}
