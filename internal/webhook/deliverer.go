package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/store"
)

// Config tunes a Deliverer. Zero values take the defaults.
type Config struct {
	// Owner names this replica in leases. Default hostname-pid-random.
	Owner string
	// AllowHosts are the hosts that may be called over http and may resolve
	// to loopback or private addresses (MCPGUARD_WEBHOOK_ALLOW_HOSTS).
	AllowHosts []string
	// Timeout bounds one attempt, connection to the end of the answer's
	// body (MCPGUARD_WEBHOOK_TIMEOUT). Default 10s.
	Timeout time.Duration
	// MaxResponseBytes is how much of an answer's body is read. Default 64 KiB.
	MaxResponseBytes int64
	// RetryFor is how long after its first attempt a delivery is retried
	// (MCPGUARD_WEBHOOK_RETRY_FOR). Default 24h.
	RetryFor time.Duration
	// DisableAfter disables an endpoint whose deliveries all failed for this
	// long (MCPGUARD_WEBHOOK_DISABLE_AFTER). Default 72h.
	DisableAfter time.Duration
	// BackoffBase and BackoffMax bound the delay between attempts: it
	// doubles from the base up to the ceiling. Defaults 5s and 1h.
	BackoffBase, BackoffMax time.Duration
	// Lease is how long a claimed delivery is held; a replica that dies
	// holding one loses it after this. Default 2×Timeout + 5s.
	Lease time.Duration
	// Senders is how many deliveries this replica sends at once. Default 8.
	Senders int
	// PollInterval is the fallback look for due deliveries (retries come
	// due without a notification). Default 1s.
	PollInterval time.Duration
	// Logger receives the deliverer's logs. Default: disabled.
	Logger zerolog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if c.Owner == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "mcpguard"
		}
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = 64 << 10
	}
	if c.RetryFor <= 0 {
		c.RetryFor = 24 * time.Hour
	}
	if c.DisableAfter <= 0 {
		c.DisableAfter = 72 * time.Hour
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = 5 * time.Second
	}
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = max(c.BackoffBase, time.Hour)
	}
	if c.Lease <= 0 {
		c.Lease = 2*c.Timeout + 5*time.Second
	}
	if c.Senders <= 0 {
		c.Senders = 8
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	return c
}

// Deliverer sends the outbox's deliveries. Every replica runs one: a
// delivery is claimed by one of them at a time under a lease.
type Deliverer struct {
	db      *store.DB
	cfg     Config
	log     zerolog.Logger
	client  *http.Client
	metrics *metrics
	wake    chan struct{}
}

// NewDeliverer returns a deliverer of db's outbox.
func NewDeliverer(db *store.DB, cfg Config) *Deliverer {
	cfg = cfg.withDefaults()
	return &Deliverer{
		db:      db,
		cfg:     cfg,
		log:     cfg.Logger.With().Str("component", "webhooks").Str("owner", cfg.Owner).Logger(),
		client:  newClient(cfg),
		metrics: newMetrics(cfg.Registerer),
		wake:    make(chan struct{}, 1),
	}
}

// errRefusedAddress is a dial to an address a host outside the allow-list
// may not resolve to.
var errRefusedAddress = errors.New("the host resolves to a loopback, private or link-local address and is not in MCPGUARD_WEBHOOK_ALLOW_HOSTS")

// newClient is the HTTP client of deliveries: no proxy from the
// environment, no redirects followed (a 3xx is a failed attempt: a redirect
// could lead a signed event anywhere), a bound on the whole exchange, and a
// dialer that refuses non-public addresses for hosts outside the allow-list,
// checked on the address actually dialled (after DNS), so a name that
// resolves to 127.0.0.1 is refused too.
func newClient(cfg Config) *http.Client {
	plain := &net.Dialer{Timeout: cfg.Timeout}
	guarded := &net.Dialer{Timeout: cfg.Timeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !mcpguard.PublicAddr(ap.Addr()) {
			return errRefusedAddress
		}
		return nil
	}}
	transport := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err == nil && mcpguard.WebhookHostAllowed(host, cfg.AllowHosts) {
				return plain.DialContext(ctx, network, addr)
			}
			return guarded.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
	}
	return &http.Client{
		Transport:     transport,
		Timeout:       cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Owner is the name this deliverer writes into leases.
func (d *Deliverer) Owner() string { return d.cfg.Owner }

func (d *Deliverer) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// recordTimeout bounds the write of an attempt's result.
const recordTimeout = 10 * time.Second

// Run sends deliveries until ctx is done; sends in flight then finish
// (each is bounded by Timeout) and are recorded before Run returns.
func (d *Deliverer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() {
		d.db.Listen(ctx, store.Listener{
			Channels:  []string{store.WebhooksChannel},
			OnNotify:  func(store.Notification) { d.signal() },
			OnConnect: d.signal,
			OnError:   func(err error) { d.log.Warn().Err(err).Msg("listener connection lost; reconnecting") },
		})
	})
	sendCtx := context.WithoutCancel(ctx)
	slots := make(chan struct{}, d.cfg.Senders)
	d.log.Info().Int("senders", d.cfg.Senders).Msg("webhook deliverer started")
	for {
		if free := cap(slots) - len(slots); free > 0 && ctx.Err() == nil {
			claimed, err := d.db.ClaimDeliveries(ctx, d.cfg.Owner, d.cfg.Lease, free)
			if err != nil && ctx.Err() == nil {
				d.log.Warn().Err(err).Msg("claiming webhook deliveries failed")
			}
			for _, c := range claimed {
				slots <- struct{}{}
				wg.Go(func() {
					defer func() {
						<-slots
						d.signal() // a slot is free, and the protection's next delivery may be due
					}()
					d.deliver(sendCtx, c)
				})
			}
			if len(claimed) == free {
				continue // more may be due
			}
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			d.log.Info().Msg("webhook deliverer stopped")
			return nil
		case <-d.wake:
		case <-time.After(d.cfg.PollInterval):
		}
	}
}

// deliver makes one attempt of a claimed delivery and records it.
func (d *Deliverer) deliver(ctx context.Context, c store.ClaimedDelivery) {
	log := d.log.With().Str("webhook_id", c.WebhookID).Str("delivery_id", c.ID).Str("msg_id", c.MsgID).
		Str("event_type", c.EventType).Int("attempt", c.Attempt).Logger()
	start := time.Now()
	a := store.DeliveryAttempt{RetryFor: d.cfg.RetryFor, DisableAfter: d.cfg.DisableAfter}
	switch {
	case c.SecretErr != nil:
		a.Error = "the signing secret does not open with the configured credentials keys"
	default:
		if problem := mcpguard.CheckWebhookURL(c.URL, d.cfg.AllowHosts); problem != "" {
			a.Error = "not sent: the URL " + problem
		} else {
			a.Status, a.Error = d.post(ctx, c)
			a.Succeeded = a.Error == ""
		}
	}
	a.Duration = time.Since(start)
	a.RetryAfter = backoff(d.cfg.BackoffBase, d.cfg.BackoffMax, c.Attempt)
	d.metrics.duration.Observe(a.Duration.Seconds())
	rctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	out, err := d.db.RecordDelivery(rctx, c, d.cfg.Owner, a)
	ev := log.Debug()
	if !a.Succeeded {
		ev = log.Info()
	}
	ev = ev.Int("status", a.Status).Int64("duration_ms", a.Duration.Milliseconds()).Str("host", hostOf(c.URL))
	if a.Error != "" {
		ev = ev.Str("error", a.Error)
	}
	switch {
	case err != nil:
		// The lease expires and another attempt follows: at least once.
		log.Warn().Err(err).Msg("recording a webhook delivery attempt failed")
		d.metrics.outcomes.WithLabelValues("lost").Inc()
		return
	case out.Lost:
		ev.Msg("webhook delivery attempt discarded: another replica took the delivery over")
		d.metrics.outcomes.WithLabelValues("lost").Inc()
		return
	case out.State == mcpguard.DeliverySucceeded:
		ev.Msg("webhook delivered")
		d.metrics.outcomes.WithLabelValues("succeeded").Inc()
	case out.State == mcpguard.DeliveryFailed:
		log.Warn().Int("status", a.Status).Str("error", a.Error).Msg("webhook delivery failed for good")
		d.metrics.outcomes.WithLabelValues("failed").Inc()
	default:
		ev.Int64("retry_in_ms", a.RetryAfter.Milliseconds()).Msg("webhook delivery attempt failed; retrying later")
		d.metrics.outcomes.WithLabelValues("retry").Inc()
	}
	if out.Disabled {
		log.Warn().Str("reason", out.DisabledReason).Msg("webhook disabled")
		d.metrics.disabled.Inc()
	}
}

// post sends the signed payload; error text is "" on a 2xx answer. Errors
// never include the URL (its query may carry the receiver's own token).
func (d *Deliverer) post(ctx context.Context, c store.ClaimedDelivery) (status int, problem string) {
	wh, err := standardwebhooks.NewWebhook(c.Secret)
	if err != nil {
		return 0, "the signing secret is malformed"
	}
	now := time.Now()
	signature, err := wh.Sign(c.MsgID, now, c.Payload)
	if err != nil {
		return 0, "signing failed"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(c.Payload))
	if err != nil {
		return 0, "the URL cannot be requested"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mcpguard-webhooks")
	req.Header.Set(standardwebhooks.HeaderWebhookID, c.MsgID)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, signature)
	resp, err := d.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) || (ue != nil && ue.Timeout()) {
			return 0, fmt.Sprintf("no answer within %s", d.cfg.Timeout)
		}
		return 0, err.Error()
	}
	defer resp.Body.Close()
	// Read a bounded part of the answer (a receiver may stream without
	// end); the rest is dropped with the connection.
	n, readErr := io.Copy(io.Discard, io.LimitReader(resp.Body, d.cfg.MaxResponseBytes))
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return resp.StatusCode, fmt.Sprintf("HTTP %d: redirects are not followed", resp.StatusCode)
	case resp.StatusCode < 200 || resp.StatusCode >= 300:
		return resp.StatusCode, fmt.Sprintf("HTTP %d", resp.StatusCode)
	case readErr != nil && n < d.cfg.MaxResponseBytes:
		return resp.StatusCode, "the answer's body could not be read: " + readErr.Error()
	}
	return resp.StatusCode, ""
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

// backoff is the delay after the attempt-th failed attempt: base doubling
// up to ceiling, with equal jitter so endpoints that failed together do not
// retry together. With the defaults (5s to 1h) the first ten attempts span
// one to one and a half hours, then one every 30 to 60 minutes: 24h holds
// 30 to 50 attempts.
func backoff(base, ceiling time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	if half := d / 2; half > 0 {
		d = half + mathrand.N(d-half+1)
	}
	return d
}

type metrics struct {
	outcomes *prometheus.CounterVec
	disabled prometheus.Counter
	duration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		outcomes: f.NewCounterVec(prometheus.CounterOpts{Name: "mcpguard_webhook_attempts_total",
			Help: "Webhook delivery attempts by outcome: succeeded (2xx), retry (failed, tried again later), failed (failed for good), lost (result discarded: the lease had moved on, or the record failed)."},
			[]string{"outcome"}),
		disabled: f.NewCounter(prometheus.CounterOpts{Name: "mcpguard_webhook_disabled_total",
			Help: "Webhook endpoints this replica disabled after their deliveries failed for MCPGUARD_WEBHOOK_DISABLE_AFTER."}),
		duration: f.NewHistogram(prometheus.HistogramOpts{Name: "mcpguard_webhook_attempt_duration_seconds",
			Help: "Time of a webhook delivery attempt, until the answer's body was read.", Buckets: prometheus.DefBuckets}),
	}
	// Every outcome is exported from the start, at zero.
	for _, o := range []string{"succeeded", "retry", "failed", "lost"} {
		m.outcomes.WithLabelValues(o)
	}
	return m
}
