package mcpguard

import "time"

// Plan is the answer of a dry run (?dryRun=true on POST /protections, PATCH
// and DELETE /protections/{id}): what the operation would do, step by step,
// and every problem found, from read-only Anypoint calls. Nothing is stored.
type Plan struct {
	// DryRun is always true: the answer is a plan, not a protection.
	DryRun bool `json:"dryRun"`
	// Operation is the kind the real request would start: protect, update
	// or unprotect.
	Operation string `json:"operation"`
	// ProtectionID names the protection a PATCH or DELETE plan is about
	// (absent for POST: the real request would create a new id).
	ProtectionID string `json:"protectionId,omitempty"`
	// Starts says whether the real request would start an operation: false
	// for a patch that changes nothing Anypoint holds, a repeated DELETE,
	// or a request the real one would refuse (see Problems).
	Starts bool `json:"starts"`
	// Changes lists the request fields an update changes; RewindTo is the
	// step it would rewind to.
	Changes  []string `json:"changes"`
	RewindTo string   `json:"rewindTo,omitempty"`
	// Steps are the operation's steps in order, each with its action.
	Steps []PlanStep `json:"steps"`
	// Problems are what would stop the real operation, or make it refuse.
	Problems []PlanProblem `json:"problems"`
}

// Actions of a plan's steps and resources.
const (
	ActionCreate = "create" // made anew
	ActionAdopt  = "adopt"  // found as it should be and used as is
	ActionUpdate = "update" // changed in place
	ActionDelete = "delete" // removed (a deployment: taken off the gateway)
	ActionSkip   = "skip"   // not touched: the step does not run, or the object is left alone
	ActionCheck  = "check"  // the step only reads (auth, verify)
	// ActionUnknown marks a step that cannot be planned because an earlier
	// one found a problem, or the dry run ran out of time.
	ActionUnknown = "unknown"
)

// PlanStep is what one step of the operation would do, and on what.
type PlanStep struct {
	Name string `json:"name"`
	// Action is the step's overall action; Resources say it per object.
	Action    string         `json:"action"`
	Detail    string         `json:"detail"`
	Resources []PlanResource `json:"resources"`
	// Warnings are what the step would record as warning events.
	Warnings []string `json:"warnings"`
}

// PlanResource is one Anypoint object a step acts on. Ids keep Anypoint's
// types: integers for instances, deployments and policies, strings for the
// others. Configuration values are never shown, only the names that change.
type PlanResource struct {
	// Kind is organization, asset, environment, target, instance,
	// deployment or policy.
	Kind   string `json:"kind"`
	Action string `json:"action"`
	ID     any    `json:"id,omitempty"`
	Name   string `json:"name,omitempty"`
	// GroupID and Version are an asset's or a policy's coordinates.
	GroupID string `json:"groupId,omitempty"`
	Version string `json:"version,omitempty"`
	// GatewayVersion is a target's (or deployment's) runtime version.
	GatewayVersion string `json:"gatewayVersion,omitempty"`
	EnvironmentID  string `json:"environmentId,omitempty"`
	// Order is a policy's final place in the chain (1 runs first).
	Order int `json:"order,omitempty"`
	// Changes names what an update changes (instance fields, a policy's
	// configuration properties).
	Changes []string `json:"changes,omitempty"`
	Detail  string   `json:"detail,omitempty"`
}

// PlanProblem is one thing that would stop or refuse the real request.
type PlanProblem struct {
	// Step is where the real operation would stop ("" for the request).
	Step string `json:"step,omitempty"`
	// Code classifies it (environment_not_found, target_not_running,
	// policy_not_in_catalogue, invalid_configuration, ...; see openapi.yaml).
	Code string `json:"code"`
	// Status is the HTTP status the real request, or Anypoint's failed
	// call, would answer; absent when neither would.
	Status  int    `json:"status,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// Problem codes of a plan.
const (
	ProblemEnvironmentNotFound  = "environment_not_found"
	ProblemTargetNotFound       = "target_not_found"
	ProblemTargetNotRunning     = "target_not_running"
	ProblemAssetNotFound        = "asset_not_found"
	ProblemAssetVersionTaken    = "asset_version_taken"
	ProblemPolicyNotInCatalogue = "policy_not_in_catalogue"
	ProblemInvalidConfiguration = "invalid_configuration"
	ProblemPolicyConflict       = "policy_conflict"
	ProblemInstanceNotFound     = "instance_not_found"
	ProblemPortTaken            = "port_taken"
	ProblemOutOfScope           = "out_of_scope"
	ProblemCredentials          = "credentials"
	ProblemConflict             = "conflict"
	ProblemTimeout              = "timeout"
	ProblemUpstream             = "upstream_error"
	ProblemOther                = "other"
)

// Unavailable is the error of a dry run Anypoint throttled: nothing was
// planned, and the caller should try again after RetryAfter.
type Unavailable struct {
	Message    string
	RetryAfter time.Duration
}

// Error implements the error interface.
func (e *Unavailable) Error() string { return e.Message }
