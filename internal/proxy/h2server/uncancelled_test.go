package h2server

import (
	"context"
	"testing"
)

type testKey struct{}

func TestUncancelledKeepsValuesAndDropsCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), testKey{}, "v"))
	u := context.Context(&uncancelled{ctx})
	cancel()
	if u.Done() != nil || u.Err() != nil {
		t.Errorf("Done() = %v, Err() = %v after the parent ended, want nil and nil", u.Done(), u.Err())
	}
	if got := u.Value(testKey{}); got != "v" {
		t.Errorf("Value = %v, want the parent's v", got)
	}
	// context.WithoutCancel's struct is boxed on every lookup; this one
	// must not be, as every stream context's Value goes through it.
	if n := testing.AllocsPerRun(100, func() { _ = u.Value(testKey{}) }); n != 0 {
		t.Errorf("Value allocates %v times per call, want 0", n)
	}
}
