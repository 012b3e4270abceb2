package workflow

import (
	"context"
	"errors"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/sensitive"
)

// SensitiveStore keeps a protection's sensitive policy configuration values
// sealed (store.DB implements it).
type SensitiveStore interface {
	// OpenSensitive returns the sealed values by JSON Pointer into the request.
	OpenSensitive(ctx context.Context, id string) (sensitive.Values, error)
	// SealSensitive seals more values and masks them in the stored request.
	SealSensitive(ctx context.Context, id string, values sensitive.Values) error
}

// HintSensitiveMissing explains a masked value without a sealed one.
const HintSensitiveMissing = "A policy configuration value reads \"" + sensitive.Mask + "\" but no sealed value is stored for that place " +
	"(a retry's policies moved it). Retry with the policies' real values: they are sealed again and never shown."

// withSensitive returns the run the policies step works on: its policies
// with the sealed values put back (in a copy: the stored request keeps the
// mask) and those values in its secrets, so every Anypoint error and every
// failure of the step is redacted of them. Without a store, a masked value
// fails the step rather than reach Anypoint as the mask.
func (g *Guide) withSensitive(ctx context.Context, run *Run) (*Run, error) {
	values := sensitive.Values{}
	if g.cfg.Sensitive != nil {
		var err error
		if values, err = g.cfg.Sensitive.OpenSensitive(ctx, run.ProtectionID); err != nil {
			return nil, Transient("error opening the sealed policy configuration values", err, 0)
		}
	}
	restored, err := sensitive.Restore(run.Request.Policies, values)
	if err != nil {
		return nil, Permanent(0, err.Error(), HintSensitiveMissing)
	}
	r := *run
	r.Request.Policies = restored
	r.secrets = append(append([]string(nil), run.secrets...), values.Strings()...)
	return &r, nil
}

// sealTemplateSecrets seals the values that the policies' templates mark
// sensitive and that no well-known name caught when the request arrived,
// and masks them in the stored request. It returns the values, for redaction.
func (g *Guide) sealTemplateSecrets(ctx context.Context, run *Run, stored []mcpguard.PolicyInput, templates []anypoint.PolicyTemplate) (sensitive.Values, error) {
	if g.cfg.Sensitive == nil {
		return nil, nil
	}
	_, values := maskTemplateSecrets(stored, templates)
	if len(values) == 0 {
		return nil, nil
	}
	if err := g.cfg.Sensitive.SealSensitive(ctx, run.ProtectionID, values); err != nil {
		return nil, Transient("error sealing the policy configuration values the templates mark sensitive", err, 0)
	}
	return values, nil
}

// redactFailure removes the run's secrets from a step's error.
func redactFailure(err error, secrets []string) error {
	if err == nil || len(secrets) == 0 {
		return err
	}
	r := anypoint.NewRedactor(secrets)
	var f *Failure
	if !errors.As(err, &f) {
		return redactedError{text: r.Redact(err.Error()), cause: err}
	}
	c := *f
	c.Message, c.Hint = r.Redact(f.Message), r.Redact(f.Hint)
	if f.Err != nil {
		if text := f.Err.Error(); r.Redact(text) != text {
			c.Err = redactedError{text: r.Redact(text), cause: f.Err}
		}
	}
	return &c
}

// redactedError shows a redacted text and still unwraps to its cause, so
// errors.Is sees cancellation through it.
type redactedError struct {
	text  string
	cause error
}

func (e redactedError) Error() string { return e.text }
func (e redactedError) Unwrap() error { return e.cause }

// maskTemplateSecrets masks, in a copy of policies, every value a
// well-known name or the policy's template marks secret, and returns the
// values it masked.
func maskTemplateSecrets(policies []mcpguard.PolicyInput, templates []anypoint.PolicyTemplate) ([]mcpguard.PolicyInput, sensitive.Values) {
	marked := make([]map[string]bool, len(policies))
	for i, in := range policies {
		if tpl, ok := findTemplate(templates, in); ok {
			marked[i] = sensitive.TemplateSecrets(tpl.Configuration)
		}
	}
	return sensitive.MaskPolicies(policies, func(i int, name string) bool { return marked[i][name] })
}
