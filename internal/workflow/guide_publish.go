package workflow

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/mcpguard/mcpguard/internal/anypoint"
)

// Publication states Exchange reports while it works (docs/architecture.md,
// "Anypoint: publishing"): completed ends well; failed and error end badly; the others mean
// "still working". Anything else ends the poll with a clear error rather than
// polling forever.
var (
	publicationWorking = map[string]bool{"running": true, "pending": true, "queued": true, "processing": true, "in_progress": true}
	publicationFailed  = map[string]bool{"failed": true, "error": true, "cancelled": true, "canceled": true, "aborted": true}
)

// publicationProgress turns one poll of an asynchronous publication into
// the step's outcome, within the PublishTimeout since publish first started.
func (g *Guide) publicationProgress(run *Run, group, asset, version string, st *anypoint.PublicationStatus) (*Outcome, error) {
	gav := fmt.Sprintf("%s/%s/%s", group, asset, version)
	status := strings.ToLower(strings.TrimSpace(st.Status))
	switch {
	case status == anypoint.PublicationCompleted:
		return done(map[string]any{"groupId": group, "assetId": asset, "assetVersion": version, "publicationStatus": status})
	case publicationFailed[status]:
		var reasons []string
		for _, step := range st.Steps {
			for _, e := range step.Errors {
				if step.Description != "" {
					e = step.Description + ": " + e
				}
				reasons = append(reasons, e)
			}
		}
		if len(reasons) == 0 {
			reasons = []string{"Exchange gave no reason"}
		}
		return nil, Permanent(0, fmt.Sprintf("Exchange ended the publication of %s with status %q: %s", gav, st.Status, strings.Join(reasons, "; ")), HintPublicationFailed)
	case publicationWorking[status] || status == "":
		if waited := g.cfg.Now().Sub(run.StepStartedAt); waited >= g.cfg.PublishTimeout {
			return nil, Permanent(0, fmt.Sprintf("the publication of %s is still %q after %s", gav, st.Status, waited.Round(1e9)), HintPublicationTimeout)
		}
		return &Outcome{PollAfter: g.pollDelay(run), Captured: map[string]any{"publicationStatus": st.Status}}, nil
	}
	return nil, Permanent(0, fmt.Sprintf("Exchange reports the publication of %s as %q, a status mcpguard does not know (known: %s)",
		gav, st.Status, "running, pending, queued, processing, completed, failed, error"), HintPublicationFailed)
}

// checkListener asks the gateway target which API instances already listen
// on the instance's port and base path (GET gateway-targets/{id}/apis) and
// fails with a clear hint when another one does, instead of the platform's
// 400 "Proxy must be deployed in a port that is available" (docs/architecture.md, "Anypoint: instances, deployments and policies").
// A platform that cannot answer the question is not a reason to stop: the
// deployment's own answer still carries the hint.
func (g *Guide) checkListener(ctx context.Context, s *anypoint.Session, run *Run, org, env string, api int64, target string) error {
	in := run.Request.Instance
	if in == nil || in.ProxyURI == "" {
		return nil
	}
	port, path := listener(in.ProxyURI)
	apis, err := s.TargetAPIs(ctx, org, env, target, port, path)
	switch {
	case err == nil:
	case isClass(err, anypoint.ClassNotFound) || isClass(err, anypoint.ClassInvalid):
		run.Warn(ctx, "could not ask the gateway target which APIs use port "+port+" and path "+path+"; deploying anyway",
			map[string]any{"targetId": target})
		return nil
	default:
		return fail("checking the gateway target's ports and paths", err, "")
	}
	for _, other := range apis.Instances {
		if other.ID != api && (other.Port == "" || other.Port == port) && (other.Path == "" || other.Path == path) {
			return Permanent(0, fmt.Sprintf("port %s and base path %s of gateway target %s are taken by API instance %d",
				port, path, varString(run, "targetName"), other.ID), HintPortTaken)
		}
	}
	return nil
}

// listener splits a proxyUri into the port and base path the gateway listens
// on: the scheme's port when none is given, "/" for no path.
func listener(proxyURI string) (port, path string) {
	u, err := url.Parse(proxyURI)
	if err != nil {
		return "", "/"
	}
	port, path = u.Port(), u.Path
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	if path == "" {
		path = "/"
	}
	return port, path
}
