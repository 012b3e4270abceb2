package mcpguard

import (
	"context"
	"encoding/json"
	"time"
)

// State is the lifecycle state of a Protection.
type State string

// Protection states. queued and running are live; the other three are final
// until a retry puts a failed or cancelled job back in the queue.
const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
)

// Finished reports whether no worker will touch a job in this state again.
func (s State) Finished() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCancelled
}

// StepState is the state of one step of a Protection.
type StepState string

// Step states.
const (
	StepPending   StepState = "pending"
	StepRunning   StepState = "running"
	StepSucceeded StepState = "succeeded"
	StepFailed    StepState = "failed"
	StepSkipped   StepState = "skipped"
)

// Ref names an Anypoint object by id or by name; exactly one is set.
type Ref struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// TargetRef names a Flex Gateway target and may override its runtime version.
type TargetRef struct {
	ID             string `json:"id,omitempty"`
	Name           string `json:"name,omitempty"`
	GatewayVersion string `json:"gatewayVersion,omitempty"`
}

// SpecSource describes an MCP server to publish to Exchange (guide step 1).
type SpecSource struct {
	AssetID     string          `json:"assetId"`
	Version     string          `json:"version"`
	Name        string          `json:"name"`
	GroupID     string          `json:"groupId,omitempty"`
	Description string          `json:"description,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
}

// AssetSource names an MCP asset already in Exchange, by coordinates or by name.
type AssetSource struct {
	GroupID string `json:"groupId,omitempty"`
	AssetID string `json:"assetId,omitempty"`
	Version string `json:"version,omitempty"`
	Name    string `json:"name,omitempty"`
}

// InstanceSource names an API Manager instance that already exists, by id or label.
type InstanceSource struct {
	ID    int64  `json:"id,omitempty"`
	Label string `json:"label,omitempty"`
}

// Source is where the caller starts in the guide; exactly one field is set.
type Source struct {
	Spec     *SpecSource     `json:"spec,omitempty"`
	Asset    *AssetSource    `json:"asset,omitempty"`
	Instance *InstanceSource `json:"instance,omitempty"`
}

// InstanceInput configures the API instance mcpguard creates.
type InstanceInput struct {
	UpstreamURI string `json:"upstreamUri,omitempty"`
	ProxyURI    string `json:"proxyUri,omitempty"`
	Label       string `json:"label,omitempty"`
}

// PolicyInput is one policy the caller wants applied.
type PolicyInput struct {
	AssetID        string         `json:"assetId"`
	GroupID        string         `json:"groupId,omitempty"`
	Version        string         `json:"version,omitempty"`
	Configuration  map[string]any `json:"configuration,omitempty"`
	Order          *int           `json:"order,omitempty"`
	AllowDuplicate bool           `json:"allowDuplicate,omitempty"`
}

// Request is what a portal asks for, without credentials: it is stored in
// plaintext and returned by the API.
type Request struct {
	OrganizationID string         `json:"organizationId,omitempty"`
	Environment    *Ref           `json:"environment,omitempty"`
	Source         Source         `json:"source"`
	Target         *TargetRef     `json:"target,omitempty"`
	Instance       *InstanceInput `json:"instance,omitempty"`
	Policies       []PolicyInput  `json:"policies"`
	// OnFailure is what a protect operation, or an update that deployed,
	// that stops after deploying and before its policies are applied does
	// with its deployment: OnFailureUndeploy (the default, fail closed) or
	// OnFailureKeep.
	OnFailure string `json:"onFailure,omitempty"`
}

// The values of Request.OnFailure.
const (
	OnFailureUndeploy = "undeploy"
	OnFailureKeep     = "keep"
)

// Credentials authenticate mcpguard to Anypoint for one job: a bearer token,
// a connected app, or a user. They are stored only encrypted and never returned.
type Credentials struct {
	Token        string `json:"token,omitempty"`
	ClientID     string `json:"clientId,omitempty"`
	ClientSecret string `json:"clientSecret,omitempty"`
	Username     string `json:"username,omitempty"`
	Password     string `json:"password,omitempty"`
}

// String keeps credentials out of any log line or error that formats them.
func (Credentials) String() string { return "[redacted credentials]" }

// GoString keeps credentials out of %#v output.
func (Credentials) GoString() string { return "[redacted credentials]" }

// NewProtection is the body of POST /protections: the request plus credentials.
type NewProtection struct {
	Request
	Credentials *Credentials `json:"credentials,omitempty"`
}

// RetryInput is the optional body of POST /protections/{id}/retry: fresh
// credentials and corrected inputs replace the stored ones (instance member by
// member, the others whole). A source must keep its kind (spec, asset or
// instance): starting elsewhere is a new protection.
type RetryInput struct {
	Credentials *Credentials   `json:"credentials,omitempty"`
	Source      *Source        `json:"source,omitempty"`
	Target      *TargetRef     `json:"target,omitempty"`
	Environment *Ref           `json:"environment,omitempty"`
	Instance    *InstanceInput `json:"instance,omitempty"`
	Policies    []PolicyInput  `json:"policies,omitempty"`
}

// UpdateInput is a PATCH /protections/{id}: the JSON merge patch's members
// (RFC 7396) over the stored request, and credentials for the operation
// when the stored ones are gone (they are not part of the request).
type UpdateInput struct {
	Patch       map[string]json.RawMessage `json:"patch"`
	Credentials *Credentials               `json:"credentials,omitempty"`
}

// UnprotectInput is the optional body of DELETE /protections/{id}:
// credentials for when the stored ones are gone (removed after success).
type UnprotectInput struct {
	Credentials *Credentials `json:"credentials,omitempty"`
}

// Retried is the answer of a retry: the re-queued protection and what the
// retry rewound. The same facts are in the retry_requested event.
type Retried struct {
	*Protection
	// Corrected lists the request fields whose values the retry changed, as
	// paths such as "target.gatewayVersion".
	Corrected []string `json:"corrected"`
	// RewoundTo is the step the job resumes at: the earliest step that reads a
	// corrected field, or the step where the job stopped when that comes first.
	RewoundTo string `json:"rewoundTo"`
	// Rerun lists, in order, every step that will run again.
	Rerun []string `json:"rerun"`
}

// JobError explains why a step or a job failed, with the upstream status and
// the guide's hint when one applies.
type JobError struct {
	Step string `json:"step"`
	// Status is what Anypoint answered the failed call with; absent when
	// Anypoint did not answer with an error. 403 also marks a call mcpguard
	// refused outside the tenant's scope.
	Status  int    `json:"status,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
	// RetryFrom is the step a retry without corrections resumes at, when it
	// is not Step: the earlier step that repairs what Step found.
	RetryFrom string `json:"retryFrom,omitempty"`
}

// Step is the recorded state of one step of a Protection.
type Step struct {
	Name       string         `json:"name"`
	State      StepState      `json:"state"`
	Attempts   int            `json:"attempts"`
	StartedAt  *time.Time     `json:"startedAt"`
	FinishedAt *time.Time     `json:"finishedAt"`
	Captured   map[string]any `json:"captured"`
	Error      *JobError      `json:"error"`
}

// Protection is one durable job and everything known about it.
type Protection struct {
	ID     string `json:"id"`
	Tenant string `json:"-"`
	// Operation is the kind of the latest operation (protect, update,
	// unprotect); State, CurrentStep, Steps and Error are that operation's.
	Operation   string         `json:"operation"`
	State       State          `json:"state"`
	CurrentStep string         `json:"currentStep"`
	CreatedAt   time.Time      `json:"createdAt"`
	UpdatedAt   time.Time      `json:"updatedAt"`
	FinishedAt  *time.Time     `json:"finishedAt"`
	Request     Request        `json:"request"`
	Variables   map[string]any `json:"variables"`
	Steps       []Step         `json:"steps"`
	Error       *JobError      `json:"error"`
}

// Operation kinds: every change to a protection is one (docs/architecture.md, "Operations").
const (
	OperationProtect   = "protect"
	OperationUpdate    = "update"
	OperationUnprotect = "unprotect"
)

// Operation is one change to a protection, with its own steps and error.
type Operation struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	State      State      `json:"state"`
	CreatedAt  time.Time  `json:"createdAt"`
	FinishedAt *time.Time `json:"finishedAt"`
	Steps      []Step     `json:"steps"`
	Error      *JobError  `json:"error"`
	// Changes lists the request fields the operation changed (an update's).
	Changes []string `json:"changes"`
}

// Event is one entry of a protection's append-only audit trail.
type Event struct {
	At time.Time `json:"at"`
	// Operation is the id of the operation the event belongs to.
	Operation string         `json:"operation"`
	Kind      string         `json:"kind"`
	Step      string         `json:"step,omitempty"`
	Attempt   int            `json:"attempt,omitempty"`
	Detail    map[string]any `json:"detail,omitempty"`
}

// Event kinds written to the audit trail.
const (
	EventCreated         = "created"
	EventStepStarted     = "step_started"
	EventStepSucceeded   = "step_succeeded"
	EventStepFailed      = "step_failed"
	EventStepSkipped     = "step_skipped"
	EventRetryScheduled  = "retry_scheduled"
	EventWarning         = "warning"
	EventCancelRequested = "cancel_requested"
	EventStateChanged    = "state_changed"
	EventRetryRequested  = "retry_requested"
	// EventCredentialsRemoved: maintenance removed the stored credentials of a
	// job that stayed failed or cancelled longer than MCPGUARD_CREDENTIALS_TTL.
	EventCredentialsRemoved = "credentials_removed"
	// EventHistoryRemoved: maintenance removed the steps and events of a
	// protection finished longer ago than MCPGUARD_RETENTION; it is then the
	// only event left.
	EventHistoryRemoved = "history_removed"
	// EventOperationStarted: a PATCH or DELETE started an update or unprotect operation.
	EventOperationStarted = "operation_started"
	// EventExposurePrevented: a protect or update operation that stopped before its
	// policies were applied removed its deployment (fail closed).
	EventExposurePrevented = "exposure_prevented"
)

// ProtectionFilter selects a page of a tenant's protections, newest first.
type ProtectionFilter struct {
	State  State
	Limit  int
	Cursor string
}

// ProtectionSummary is one item of a list of protections: where the job is,
// without its request, steps or variables. A list that carried whole
// requests answered 100 MB for 100 requests of 1 MB (issue 7); a summary is
// a few hundred bytes plus the job's error, whatever the request held.
// FindProtection gives the rest.
type ProtectionSummary struct {
	ID string `json:"id"`
	// Operation is the kind of the latest operation; State, CurrentStep
	// and Error are that operation's.
	Operation   string     `json:"operation"`
	State       State      `json:"state"`
	CurrentStep string     `json:"currentStep"`
	CreatedAt   time.Time  `json:"createdAt"`
	UpdatedAt   time.Time  `json:"updatedAt"`
	FinishedAt  *time.Time `json:"finishedAt"`
	Error       *JobError  `json:"error"`
}

// EventFilter selects a page of a protection's events, oldest first.
type EventFilter struct {
	Limit  int
	Cursor string
}

// ProtectionService is what the HTTP API needs from the rest of the system.
// Every method is scoped to a tenant: another tenant's id is ENOTFOUND.
type ProtectionService interface {
	// CreateProtection queues a new job. With an idempotency key, a repeat of
	// the same body returns the first job and replayed=true; another body under
	// the same key is EUNPROCESSABLE.
	CreateProtection(ctx context.Context, tenant string, in NewProtection, idempotencyKey string) (p *Protection, replayed bool, err error)
	// FindProtection returns one job with its steps.
	FindProtection(ctx context.Context, tenant, id string) (*Protection, error)
	// ListProtections returns a page of job summaries and the cursor of the
	// next page ("" at the end).
	ListProtections(ctx context.Context, tenant string, filter ProtectionFilter) ([]*ProtectionSummary, string, error)
	// RetryProtection re-queues a failed or cancelled job (ECONFLICT otherwise)
	// at its failed step, or earlier when a correction changes what an earlier
	// step read (rewinding).
	RetryProtection(ctx context.Context, tenant, id string, in RetryInput) (*Retried, error)
	// CancelProtection cancels a queued job at once and asks a running one to stop (ECONFLICT when finished).
	CancelProtection(ctx context.Context, tenant, id string) (*Protection, error)
	// ListEventPage returns a page of the job's audit trail, oldest first,
	// and the cursor of the next page ("" at the end).
	ListEventPage(ctx context.Context, tenant, id string, filter EventFilter) ([]Event, string, error)
	// ListOperations returns the protection's operations, oldest first.
	ListOperations(ctx context.Context, tenant, id string) ([]Operation, error)
	// UnprotectProtection starts the unprotect operation (a repeat while it
	// is queued, running or succeeded starts nothing; ECONFLICT while
	// another operation is queued or running).
	UnprotectProtection(ctx context.Context, tenant, id string, in UnprotectInput) (*Protection, error)
	// UpdateProtection applies a merge patch and starts an update operation
	// (started false when it changes nothing; replayed for a repeated
	// Idempotency-Key; ECONFLICT while an operation runs or after removal;
	// EUNPROCESSABLE for a source change).
	UpdateProtection(ctx context.Context, tenant, id string, in UpdateInput, idempotencyKey string) (p *Protection, started, replayed bool, err error)
	// PlanProtection, PlanUpdate and PlanUnprotect are the dry runs of
	// CreateProtection, UpdateProtection and UnprotectProtection: the same
	// checks, then a plan from read-only Anypoint calls; nothing is stored.
	// A dry run Anypoint throttles is *Unavailable.
	PlanProtection(ctx context.Context, tenant string, in NewProtection) (*Plan, error)
	PlanUpdate(ctx context.Context, tenant, id string, in UpdateInput) (*Plan, error)
	PlanUnprotect(ctx context.Context, tenant, id string, in UnprotectInput) (*Plan, error)
}
