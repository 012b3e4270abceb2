package sim

import (
	"sort"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint"
)

// world is everything the simulated platform holds. It is only touched with
// Server.mu held.
type world struct {
	assets      []*asset
	instances   map[int64]*instance
	deployments map[int64]*deployment
	policies    map[int64]*policy
	// apiAssetIDs numbers the (org, groupId, assetId) groups of the API
	// Manager list, which carry an integer id of their own.
	apiAssetIDs map[string]int64
	// targetStatus holds the gateway targets' statuses changed by
	// SetTargetStatus, by target id.
	targetStatus map[string]string

	nextInstance, nextEndpoint, nextDeployment, nextPolicy, nextAPIAsset int64

	// notReady counts, per target id, the deployments still to be refused
	// with GatewayNotReadyError (FixtureTarget.NotReadyDeploys).
	notReady map[string]int
	// failPublications holds the publications told to fail, by "assetId/version".
	failPublications map[string]PublicationFailure
}

type asset struct {
	orgID, groupID, assetID, version string
	name, description, typ           string
	createdBy                        string
	createdAt                        time.Time
	readyAt                          time.Time // publication completes at this time
	runID                            string
	deleted                          bool // soft-deleted: hidden, yet the GAV stays locked
	// failure, when set, ends the publication with this status ("failed" or
	// "error") and these reasons instead of publishing; the GAV stays taken.
	failure    *PublicationFailure
	platform   string
	metadata   []byte
	properties map[string]string
}

func (a *asset) published(now time.Time) bool {
	return !a.deleted && a.failure == nil && !now.Before(a.readyAt)
}

type instance struct {
	id, endpointID                 int64
	orgID, envID                   string
	groupID, assetID, assetVersion string
	productVersion, instanceLabel  string
	technology                     string
	endpointType, uri, proxyURI    *string
	deploymentType                 *string
	endpointURI, description       *string
	responseTimeout                *int64
	createdAt, updatedAt           time.Time
	deploymentID                   int64 // 0 when not deployed
}

type deployment struct {
	id, apiID                      int64
	orgID, envID                   string
	typ, targetID, targetName      string
	gatewayVersion, expectedStatus string
	applicationID                  string
	createdAt, updatedAt           time.Time
	appliedAt                      time.Time // zero: never applied (target not running)
	// connected: the target is in connected mode, so the autodiscovery
	// status never leaves "unregistered".
	connected bool
}

type policy struct {
	id, apiID                      int64
	orgID, envID                   string
	templateID                     int64
	groupID, assetID, assetVersion string
	config                         map[string]any
	order                          int
	disabled                       bool
	pointcut                       any
	label                          *string
	createdAt, updatedAt           time.Time
}

func newWorld(f *Fixtures, now time.Time) *world {
	w := &world{
		instances:        map[int64]*instance{},
		deployments:      map[int64]*deployment{},
		policies:         map[int64]*policy{},
		apiAssetIDs:      map[string]int64{},
		nextInstance:     18200100,
		nextEndpoint:     3845000,
		nextDeployment:   730100,
		nextPolicy:       2620000,
		nextAPIAsset:     213091000,
		targetStatus:     map[string]string{},
		notReady:         map[string]int{},
		failPublications: map[string]PublicationFailure{},
	}
	for _, t := range f.Targets {
		if t.NotReadyDeploys > 0 {
			w.notReady[t.ID] = t.NotReadyDeploys
		}
	}
	long := now.Add(-24 * time.Hour)
	for _, a := range f.Assets {
		w.assets = append(w.assets, &asset{
			orgID: a.OrganizationID, groupID: a.GroupID, assetID: a.AssetID, version: a.Version,
			name: a.Name, description: a.Description, typ: a.Type, createdBy: UserID,
			createdAt: long, readyAt: long, runID: newUUID(), platform: "mulesoft",
		})
	}
	for _, fi := range f.Instances {
		w.nextEndpoint++
		in := &instance{
			id: fi.ID, endpointID: w.nextEndpoint, orgID: fi.OrganizationID, envID: fi.EnvironmentID,
			groupID: fi.GroupID, assetID: fi.AssetID, assetVersion: fi.AssetVersion, productVersion: "v1",
			instanceLabel: fi.InstanceLabel, technology: fi.Technology,
			endpointType: strp(fi.EndpointType), uri: strp(fi.URI), proxyURI: strp(fi.ProxyURI),
			deploymentType: strp("HY"), createdAt: long, updatedAt: long,
		}
		if fi.ID >= w.nextInstance {
			w.nextInstance = fi.ID + 1
		}
		w.instances[in.id] = in
		if fi.TargetID != "" {
			d := &deployment{
				id: fi.DeploymentID, apiID: in.id, orgID: in.orgID, envID: in.envID, typ: "HY",
				targetID: fi.TargetID, gatewayVersion: fi.GatewayVersion, expectedStatus: "deployed",
				applicationID: newUUID(), createdAt: long, updatedAt: long, appliedAt: long,
			}
			for _, t := range f.Targets {
				if t.ID == fi.TargetID {
					d.targetName, d.connected = t.Name, t.ConnectedMode
				}
			}
			if d.id == 0 {
				w.nextDeployment++
				d.id = w.nextDeployment
			}
			if d.id >= w.nextDeployment {
				w.nextDeployment = d.id + 1
			}
			w.deployments[d.id] = d
			in.deploymentID = d.id
		}
	}
	return w
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Snapshot is what the simulator holds at one moment, for tests that must
// prove nothing was created twice. Soft-deleted assets are included with
// Status "deleted".
type Snapshot struct {
	Assets      []AssetState      `json:"assets"`
	Instances   []InstanceState   `json:"instances"`
	Deployments []DeploymentState `json:"deployments"`
	Policies    []PolicyState     `json:"policies"`
}

// AssetState is one Exchange asset version.
type AssetState struct {
	OrganizationID string `json:"organizationId"`
	GroupID        string `json:"groupId"`
	AssetID        string `json:"assetId"`
	Version        string `json:"version"`
	Name           string `json:"name"`
	Type           string `json:"type"`
	// Status is "publishing", "published", "failed" or "deleted".
	Status string `json:"status"`
}

// InstanceState is one API Manager instance.
type InstanceState struct {
	ID             int64  `json:"id"`
	OrganizationID string `json:"organizationId"`
	EnvironmentID  string `json:"environmentId"`
	GroupID        string `json:"groupId"`
	AssetID        string `json:"assetId"`
	AssetVersion   string `json:"assetVersion"`
	InstanceLabel  string `json:"instanceLabel"`
	Technology     string `json:"technology"`
	EndpointType   string `json:"endpointType"`
	// UpstreamURI and ProxyURI are endpoint.uri and endpoint.proxyUri.
	UpstreamURI string `json:"upstreamUri"`
	ProxyURI    string `json:"proxyUri"`
	Status      string `json:"status"`
}

// DeploymentState is one proxies-xapi deployment.
type DeploymentState struct {
	ID             int64  `json:"id"`
	APIID          int64  `json:"apiId"`
	OrganizationID string `json:"organizationId"`
	EnvironmentID  string `json:"environmentId"`
	TargetID       string `json:"targetId"`
	TargetName     string `json:"targetName"`
	GatewayVersion string `json:"gatewayVersion"`
	Status         string `json:"status"`
}

// PolicyState is one policy applied to an instance.
type PolicyState struct {
	ID                int64          `json:"id"`
	APIID             int64          `json:"apiId"`
	OrganizationID    string         `json:"organizationId"`
	EnvironmentID     string         `json:"environmentId"`
	GroupID           string         `json:"groupId"`
	AssetID           string         `json:"assetId"`
	AssetVersion      string         `json:"assetVersion"`
	Order             int            `json:"order"`
	Disabled          bool           `json:"disabled"`
	ConfigurationData map[string]any `json:"configurationData"`
	// Label is the policy's label, "" when it has none.
	Label string `json:"label,omitempty"`
}

// InstancesWithLabel returns the instances labelled label.
func (s Snapshot) InstancesWithLabel(label string) []InstanceState {
	var out []InstanceState
	for _, i := range s.Instances {
		if i.InstanceLabel == label {
			out = append(out, i)
		}
	}
	return out
}

// DeploymentsOf returns the deployments of one instance.
func (s Snapshot) DeploymentsOf(apiID int64) []DeploymentState {
	var out []DeploymentState
	for _, d := range s.Deployments {
		if d.APIID == apiID {
			out = append(out, d)
		}
	}
	return out
}

// PoliciesOf returns the policies of one instance, in order.
func (s Snapshot) PoliciesOf(apiID int64) []PolicyState {
	var out []PolicyState
	for _, p := range s.Policies {
		if p.APIID == apiID {
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Order < out[j].Order })
	return out
}

// State returns a snapshot of the world, sorted by id (assets by org and GAV).
func (s *Server) State() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var snap Snapshot
	for _, a := range s.state.assets {
		st := "published"
		switch {
		case a.deleted:
			st = "deleted"
		case a.failure != nil:
			st = "failed"
		case now.Before(a.readyAt):
			st = "publishing"
		}
		snap.Assets = append(snap.Assets, AssetState{OrganizationID: a.orgID, GroupID: a.groupID,
			AssetID: a.assetID, Version: a.version, Name: a.name, Type: a.typ, Status: st})
	}
	for _, in := range s.state.instances {
		snap.Instances = append(snap.Instances, InstanceState{ID: in.id, OrganizationID: in.orgID,
			EnvironmentID: in.envID, GroupID: in.groupID, AssetID: in.assetID, AssetVersion: in.assetVersion,
			InstanceLabel: in.instanceLabel, Technology: in.technology, EndpointType: deref(in.endpointType),
			UpstreamURI: deref(in.uri), ProxyURI: deref(in.proxyURI), Status: s.instanceStatus(in, now)})
	}
	for _, d := range s.state.deployments {
		st, _ := d.status(now)
		snap.Deployments = append(snap.Deployments, DeploymentState{ID: d.id, APIID: d.apiID,
			OrganizationID: d.orgID, EnvironmentID: d.envID, TargetID: d.targetID, TargetName: d.targetName,
			GatewayVersion: d.gatewayVersion, Status: st})
	}
	for _, p := range s.state.policies {
		var label string
		if p.label != nil {
			label = *p.label
		}
		snap.Policies = append(snap.Policies, PolicyState{ID: p.id, APIID: p.apiID, OrganizationID: p.orgID,
			EnvironmentID: p.envID, GroupID: p.groupID, AssetID: p.assetID, AssetVersion: p.assetVersion,
			Order: p.order, Disabled: p.disabled, ConfigurationData: cloneMap(p.config), Label: label})
	}
	sort.Slice(snap.Assets, func(i, j int) bool {
		a, b := snap.Assets[i], snap.Assets[j]
		if a.OrganizationID != b.OrganizationID {
			return a.OrganizationID < b.OrganizationID
		}
		if a.GroupID+"/"+a.AssetID != b.GroupID+"/"+b.AssetID {
			return a.GroupID+"/"+a.AssetID < b.GroupID+"/"+b.AssetID
		}
		return anypoint.CompareVersions(a.Version, b.Version) < 0
	})
	sort.Slice(snap.Instances, func(i, j int) bool { return snap.Instances[i].ID < snap.Instances[j].ID })
	sort.Slice(snap.Deployments, func(i, j int) bool { return snap.Deployments[i].ID < snap.Deployments[j].ID })
	sort.Slice(snap.Policies, func(i, j int) bool { return snap.Policies[i].ID < snap.Policies[j].ID })
	return snap
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// status is the proxies-xapi status of a deployment at now: "applying" with
// apiVersionStatus null for the first half of the delay, "unregistered" for
// the second, then "applied"/"active" (a managed gateway) or
// "applied"/"unregistered" (a connected-mode self-managed gateway; docs/architecture.md,
// "Anypoint: instances, deployments and policies").
// A deployment to a target that is not running never leaves "applying".
func (d *deployment) status(now time.Time) (status string, apiVersionStatus *string) {
	if d.expectedStatus == "undeployed" {
		// Taken off the gateway (docs/architecture.md, "Anypoint: instances,
		// deployments and policies"): nothing is served.
		return "undeployed", nil
	}
	if d.appliedAt.IsZero() {
		return "applying", strp("unregistered")
	}
	if !now.Before(d.appliedAt) {
		if d.connected {
			return "applied", strp("unregistered")
		}
		return "applied", strp("active")
	}
	if now.Sub(d.createdAt) < d.appliedAt.Sub(d.createdAt)/2 {
		return "applying", nil
	}
	return "applying", strp("unregistered")
}

// instanceStatus is the deployment's autodiscovery status: "active" from
// the moment a managed-like deployment is applied, "unregistered" before and
// on connected-mode targets.
func (s *Server) instanceStatus(in *instance, now time.Time) string {
	if d := s.state.deployments[in.deploymentID]; d != nil {
		if _, api := d.status(now); api != nil && *api == "active" {
			return "active"
		}
	}
	return "unregistered"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
