package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
)

// Step names, in the guide's order (docs/architecture.md, "Steps").
const (
	StepAuth     = "auth"
	StepPublish  = "publish"
	StepSearch   = "search"
	StepEnv      = "env"
	StepTarget   = "target"
	StepCreate   = "create"
	StepDeploy   = "deploy"
	StepInstance = "instance"
	StepPolicies = "policies"
	StepVerify   = "verify"
)

// DefaultGatewayVersion is the guide's fallback when no runtime version can be found.
const DefaultGatewayVersion = "1.0.0"

// GuideConfig configures the guide's steps.
type GuideConfig struct {
	// Anypoint is the client every step calls.
	Anypoint *anypoint.Client
	// DefaultApp is the server's connected app, used when a job carries no credentials.
	DefaultApp *anypoint.Credentials
	// Scopes bound what each tenant may do through DefaultApp; a tenant
	// missing here cannot use it (see TenantScope).
	Scopes map[string]TenantScope
	// CreatedByTenant reports whether one of the tenant's protections created
	// the API instance; nil means none did.
	CreatedByTenant func(ctx context.Context, tenant string, environmentAPIID int64) (bool, error)
	// Sensitive opens and seals a protection's sensitive policy
	// configuration values; nil means none are ever sealed.
	Sensitive SensitiveStore
	// VerifyTimeout bounds how long verify polls before it fails (default 20 minutes).
	VerifyTimeout time.Duration
	// PollInterval is the first delay between polls of publication and
	// deployment status (default 100ms); later polls back off up to PollMax.
	PollInterval time.Duration
	// PollMax caps the delay between polls (default 30s).
	PollMax time.Duration
	// PublishTimeout bounds how long publish waits for an asynchronous
	// Exchange publication to finish (default 5 minutes; it takes 5-15 s).
	PublishTimeout time.Duration
	// Now returns the current time (tests may set it).
	Now func() time.Time
}

// Guide holds the steps of the guide "Protect MCP Server With Policies".
type Guide struct {
	cfg GuideConfig
}

// GuideCatalogue returns the step catalogue of the guide, bound to an Anypoint client.
func GuideCatalogue(cfg GuideConfig) Catalogue {
	if cfg.VerifyTimeout <= 0 {
		cfg.VerifyTimeout = 20 * time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.PollMax <= 0 {
		cfg.PollMax = 30 * time.Second
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	g := &Guide{cfg: cfg}
	fromSpec := func(r *mcpguard.Request) bool { return r.Source.Spec != nil }
	fromExchange := func(r *mcpguard.Request) bool { return r.Source.Spec != nil || r.Source.Asset != nil }
	fromInstance := func(r *mcpguard.Request) bool { return r.Source.Instance != nil }
	// The declarations: which request fields and variables each step reads
	// and which variables it writes. A retry that changes a field rewinds to
	// the earliest applicable step reading it (PlanRetry); every later step
	// runs again and reconciles what an earlier attempt made.
	org := []string{"organizationId"}
	gav := []string{"groupId", "assetId", "assetVersion"}
	steps := Catalogue{
		{Name: StepAuth, Run: g.auth, IO: StepIO{
			Fields: []string{"organizationId"},
			Writes: org}},
		{Name: StepPublish, Applies: fromSpec, Run: g.publish, MaxAttempts: 12, IO: StepIO{
			Fields: []string{"source.spec"}, Reads: org,
			Writes:     slices.Concat(gav, []string{"publicationStatusLink", "publicationStatus"}),
			PerAttempt: []string{"publicationStatusLink", "publicationStatus"}}},
		{Name: StepSearch, Applies: fromExchange, Run: g.search, IO: StepIO{
			Fields: []string{"source.asset"}, Reads: gav,
			Writes: gav}},
		{Name: StepEnv, Run: g.env, IO: StepIO{
			Fields: []string{"environment"}, Reads: org,
			Writes: []string{"environmentId", "environmentName"}}},
		{Name: StepTarget, Applies: fromExchange, Run: g.target, IO: StepIO{
			Fields: []string{"target.id", "target.name", "target.gatewayVersion"}, Reads: []string{"organizationId", "environmentId"},
			Writes: []string{"targetId", "targetName", "gatewayVersion", "gatewayVersionSource"}}},
		{Name: StepCreate, Applies: fromExchange, Run: g.create, IO: StepIO{
			Fields: []string{"instance.upstreamUri", "instance.proxyUri", "instance.label"},
			Reads:  slices.Concat([]string{"organizationId", "environmentId", "createdInstances"}, gav),
			Writes: []string{"environmentApiId", "instanceLabel", "createdInstances", "instanceConfig"}}},
		{Name: StepDeploy, Applies: fromExchange, Run: g.deploy, IO: StepIO{
			Reads:  []string{"organizationId", "environmentId", "environmentApiId", "targetId", "targetName", "gatewayVersion", "instanceConfig", "deployedInstanceConfig"},
			Writes: []string{"deploymentId", "deployedInstanceConfig"}}},
		{Name: StepInstance, Applies: fromInstance, Run: g.instance, IO: StepIO{
			Fields: []string{"source.instance"}, Reads: []string{"organizationId", "environmentId", "sourceInstances"},
			Writes: []string{"environmentApiId", "deploymentId", "targetId", "sourceInstances"}}},
		{Name: StepPolicies, Run: g.policies, IO: StepIO{
			Fields: []string{"policies"}, Reads: []string{"organizationId", "environmentId", "environmentApiId", "createdInstances", "policies", "deployedPolicies", "sourceInstances"},
			Writes: []string{"policies", "foreignPolicies", "deployedPolicies", "reappliedDeployments"}}},
		{Name: StepVerify, Run: g.verify, IO: StepIO{
			Reads:  []string{"organizationId", "environmentId", "environmentApiId", "deploymentId", "policies"},
			Writes: []string{"deploymentId", "deploymentStatus", "apiVersionStatus", "apiStatus", "policyCount"}}},
		// Fail-closed's cleanup: planned with every protect and update
		// operation (skipped), started only by transition.Decide.
		{Name: StepWithdraw, Operation: OperationCleanup, Run: g.withdraw, IO: StepIO{
			Reads:  []string{"organizationId", "environmentId", "environmentApiId", "createdInstances"},
			Writes: []string{"withdrawnDeployments"}}},
		// The unprotect operation (after auth): what the protection made goes,
		// in dependency order.
		{Name: StepRemovePolicies, Operation: mcpguard.OperationUnprotect, Run: g.removePolicies, IO: StepIO{
			Reads:  []string{"organizationId", "environmentId", "environmentApiId", "createdInstances", "policies"},
			Writes: []string{"removedPolicies", "foreignPolicies"}}},
		{Name: StepRemoveDeployment, Operation: mcpguard.OperationUnprotect, Applies: fromExchange, Run: g.removeDeployment, IO: StepIO{
			Reads:  []string{"organizationId", "environmentId", "environmentApiId", "createdInstances"},
			Writes: []string{"undeployedDeployments"}}},
		{Name: StepRemoveInstance, Operation: mcpguard.OperationUnprotect, Applies: fromExchange, Run: g.removeInstance, IO: StepIO{
			Reads:  []string{"organizationId", "environmentId", "environmentApiId", "createdInstances"},
			Writes: []string{"removedInstances"}}},
	}
	observers := map[string]observeFunc{
		StepAuth: g.observeAuth(), StepPublish: g.observePublish, StepSearch: g.observeSearch(), StepEnv: g.observeEnv(),
		StepTarget: g.observeTarget(), StepCreate: g.observeCreate, StepDeploy: g.observeDeploy, StepInstance: g.observeInstance(),
		StepPolicies: g.observePolicies, StepVerify: g.observeVerify,
		StepRemovePolicies: g.observeRemovePolicies, StepRemoveDeployment: g.observeRemoveDeployment, StepRemoveInstance: g.observeRemoveInstance,
	}
	for i := range steps {
		steps[i].Run = g.scoped(steps[i].Name, steps[i].Run)
		if o := observers[steps[i].Name]; o != nil {
			steps[i].Observe = g.scopedObserve(steps[i].Name, o)
		}
	}
	return steps
}

// session returns the Anypoint session for the job's credentials, or the
// server's default connected app.
// Its calls count against the organization's call budget once the job knows
// its organization (the request's, or what auth found).
func (g *Guide) session(run *Run) (*anypoint.Session, error) {
	var s *anypoint.Session
	switch c := run.Credentials; {
	case c != nil && *c != (mcpguard.Credentials{}):
		s = g.cfg.Anypoint.Session(anypoint.Credentials{
			Token: c.Token, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
			Username: c.Username, Password: c.Password,
		})
	case g.cfg.DefaultApp != nil:
		s = g.cfg.Anypoint.Session(*g.cfg.DefaultApp)
	default:
		return nil, Permanent(0, "no Anypoint credentials: the job has none and the server has no default connected app", HintNoCredentials)
	}
	org := varString(run, "organizationId")
	if org == "" {
		org = run.Request.OrganizationID
	}
	if org != "" {
		s = s.ForOrganization(org)
	}
	if len(run.secrets) > 0 {
		s = s.WithSecrets(run.secrets...)
	}
	return s, nil
}

// start checks that earlier steps captured what this step needs, then opens
// the job's Anypoint session.
func (g *Guide) start(run *Run, needed ...string) (*anypoint.Session, error) {
	if err := need(run, needed...); err != nil {
		return nil, err
	}
	return g.session(run)
}

// fail classifies an Anypoint error for the engine, attaching the guide's hint.
func fail(op string, err error, hint string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var ae *anypoint.Error
	if !errors.As(err, &ae) {
		return Transient("error "+op, err, 0)
	}
	if ae.TokenRequest() {
		// The step's call never left: getting its token failed. Name that call.
		msg := fmt.Sprintf("error %s (%s %s): %s", ae.Op, ae.Method, ae.Path, upstreamText(ae))
		if ae.Class == anypoint.ClassTransient {
			return &Failure{Status: ae.Status, Message: msg, Hint: transientHint(ae), Transient: true, RetryAfter: ae.RetryAfter, Err: err}
		}
		return &Failure{Status: ae.Status, Message: msg, Hint: loginHint(ae), Err: err}
	}
	msg := fmt.Sprintf("error %s: %s", op, upstreamText(ae))
	if h := hintForMessage(ae.Message, ae.Code, msg); h != "" {
		hint = h
	}
	if hint == HintGatewayNotReady {
		// A 400 that heals by itself: the target is still registering
		// (docs/architecture.md, "Anypoint: error bodies"; MuleSoft's
		// Terraform provider retries it 5 times, 20 s apart).
		return &Failure{Status: ae.Status, Message: msg, Hint: hint, Transient: true, RetryAfter: ae.RetryAfter, Err: err}
	}
	switch ae.Class {
	case anypoint.ClassTransient:
		if hint == "" {
			hint = transientHint(ae)
		}
		return &Failure{Status: ae.Status, Message: msg, Hint: hint, Transient: true, RetryAfter: ae.RetryAfter, Err: err}
	case anypoint.ClassUnauthorized:
		return &Failure{Status: ae.Status, Message: msg, Hint: HintUnauthorized, Err: err}
	case anypoint.ClassForbidden:
		if hint == "" {
			hint = HintAPIManagerScopes
		}
	}
	return &Failure{Status: ae.Status, Message: msg, Hint: hint, Err: err}
}

// loginHint explains a refused login or token call by what was refused: the
// user's password (the login, or the password grant's invalid_grant) or the
// connected app.
func loginHint(ae *anypoint.Error) string {
	if ae.Path == anypoint.LoginPath || ae.Code == "invalid_grant" {
		return HintLoginRefused
	}
	return HintConnectedAppRefused
}

// transientHint is the hint of a failure the engine retries: an outage hint
// for 5xx and lost answers; throttling explains itself (the retry waits for
// the reset the platform asked for).
func transientHint(ae *anypoint.Error) string {
	if ae.Status == 0 || ae.Status >= 500 {
		return HintUpstreamUnavailable
	}
	return ""
}

// upstreamText is what Anypoint said, for the job's error message.
func upstreamText(ae *anypoint.Error) string {
	text := ae.Message
	if text == "" && ae.Status > 0 {
		text = http.StatusText(ae.Status)
	}
	if text == "" && ae.Err != nil {
		text = ae.Err.Error()
	}
	for _, d := range ae.Details {
		if d != "" && d != ae.Message {
			text += "; " + d
		}
	}
	if ae.Status > 0 {
		return fmt.Sprintf("%d %s", ae.Status, text)
	}
	return text
}

func isClass(err error, class anypoint.Class) bool {
	var ae *anypoint.Error
	return errors.As(err, &ae) && ae.Class == class
}

// maybeCommitted reports whether a failed write may still have happened
// upstream: a lost response, a timeout or a 5xx such as the edge's 504.
func maybeCommitted(err error) bool {
	var ae *anypoint.Error
	if errors.As(err, &ae) {
		return ae.MaybeCommitted || ae.Class == anypoint.ClassTransient
	}
	return false
}

// Variable accessors: captured variables come back from Postgres as JSON, so
// numbers may be json.Number, float64 or int64.

func varString(run *Run, name string) string {
	switch v := run.Variables[name].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func varInt(run *Run, name string) int64 {
	return asInt64(run.Variables[name])
}

// asInt64 reads an integer id whatever JSON decoding made of it.
func asInt64(value any) int64 {
	switch v := value.(type) {
	case json.Number:
		n, _ := v.Int64()
		return n
	case float64:
		return int64(v)
	case int64:
		return v
	case int:
		return int64(v)
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}

func need(run *Run, names ...string) error {
	for _, n := range names {
		if run.Variables[n] == nil {
			return Permanent(0, fmt.Sprintf("variable %s is missing: an earlier step did not capture it", n), "")
		}
	}
	return nil
}

// pollDelay backs off with the time already spent waiting: short at first,
// then an eighth of the wait so far, up to PollMax. A job notices it can go
// on at most 12.5% (or PollInterval) after Anypoint is ready, and a slow
// propagation still costs few calls: 59 polls for a 5-minute deployment
// (23 with the former 2s and a quarter), under 1 call/s after the first minute.
func (g *Guide) pollDelay(run *Run) time.Duration {
	waited := g.cfg.Now().Sub(run.StepStartedAt)
	d := max(g.cfg.PollInterval, waited/8)
	return min(d, g.cfg.PollMax)
}

func done(captured map[string]any) (*Outcome, error) {
	return &Outcome{Captured: captured}, nil
}
