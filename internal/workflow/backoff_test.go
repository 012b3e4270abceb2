package workflow

import (
	"testing"
	"time"
)

// The default retry budget rides out minutes of Anypoint failures, not
// seconds: even the shortest delays the jitter can draw add up to more than
// three minutes before a step fails. Nothing here waits; it sums the delays.
func TestDefaultRetryBudgetSpansMinutes(t *testing.T) {
	t.Parallel()
	c := EngineConfig{}.withDefaults()
	var shortest time.Duration
	for failed := 1; failed < c.DefaultMaxAttempts; failed++ {
		least := c.BackoffMax
		for range 200 {
			least = min(least, backoff(c.BackoffBase, c.BackoffMax, failed, 0))
		}
		shortest += least
	}
	if shortest < 3*time.Minute {
		t.Fatalf("the default budget gives up after %s of failures, want minutes", shortest)
	}
}
