package workflow

import (
	"math/rand/v2"
	"time"
)

// backoff returns how long to wait before retrying a step that has failed
// transiently `failed` times (1 for the first failure): base*2^(failed-1)
// capped at ceiling, with equal jitter so that concurrent failures spread
// out while the delay still grows, and never earlier than the upstream asked.
func backoff(base, ceiling time.Duration, failed int, retryAfter time.Duration) time.Duration {
	d := base
	for i := 1; i < failed && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	if half := d / 2; half > 0 {
		d = half + rand.N(d-half+1)
	}
	return max(d, retryAfter)
}
