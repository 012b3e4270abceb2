package sim

import (
	"encoding/json"
	"fmt"
	"os"
)

// Scopes a connected app can hold. Users hold every scope in the
// organizations they belong to; apps hold exactly what their fixture lists,
// which is how tests reproduce the guide's 403 "Manage Policies" case.
const (
	ScopeViewEnvironments    = "view:environments"
	ScopeExchangeViewer      = "exchange:viewer"
	ScopeExchangeContributor = "exchange:contributor"
	ScopeViewAPIs            = "view:apis"
	ScopeManageAPIs          = "manage:apis"
	ScopeViewPolicies        = "view:policies"
	ScopeManagePolicies      = "manage:policies"
)

// AllScopes returns every scope the simulator checks.
func AllScopes() []string {
	return []string{ScopeViewEnvironments, ScopeExchangeViewer, ScopeExchangeContributor,
		ScopeViewAPIs, ScopeManageAPIs, ScopeViewPolicies, ScopeManagePolicies}
}

// Identifiers of the built-in fixtures. Tests elsewhere use them to address
// the default world without reading the fixture file.
const (
	// DefaultOrgID is the organization of the default user and connected apps.
	DefaultOrgID   = "9b1f3c6e-4a2d-4e7b-8c1a-5d0e2f7a9b31"
	DefaultOrgName = "Acme"
	// PartnerOrgID is a second organization the default user can see; it
	// holds MCP assets so Exchange search proves it is not org scoped.
	PartnerOrgID   = "c4d2a8e1-7f3b-4c9d-a6e5-1b8f0d3c2e47"
	PartnerOrgName = "Acme Partners"
	// HiddenOrgID is an organization the default user cannot see.
	HiddenOrgID = "e7a9c1d3-2b4f-4e6a-9c8d-3f1b5a7e9d02"

	EnvSandbox          = "Sandbox"
	EnvProduction       = "Production"
	SandboxEnvID        = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	ProductionEnvID     = "6f5e4d3c-2b1a-4f9e-8d7c-6b5a4f3e2d1c"
	PartnerSandboxEnvID = "0c9b8a7f-6e5d-4c3b-9a2f-1e0d9c8b7a6f"

	// TargetFlexSandbox is RUNNING with a real version in its row.
	TargetFlexSandbox        = "flex-sandbox"
	TargetFlexSandboxID      = "3e8a1f2b-9c4d-4e5f-a6b7-c8d9e0f1a2b3"
	TargetFlexSandboxVersion = "1.13.1"
	// TargetFlexLegacy shows "-" as the row version; its detail has the real
	// one. It is a self-managed gateway in connected mode: its deployments
	// reach "applied" while the API stays "unregistered" (docs/architecture.md, "Anypoint: instances, deployments and policies").
	TargetFlexLegacy        = "flex-legacy"
	TargetFlexLegacyID      = "7b6c5d4e-3f2a-4b1c-9d8e-7f6a5b4c3d2e"
	TargetFlexLegacyVersion = "1.9.3"
	// TargetFlexDown is NOT_RUNNING: deployments to it never leave "applying".
	TargetFlexDown        = "flex-down"
	TargetFlexDownID      = "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"
	TargetFlexDownVersion = "1.12.0"
	// TargetFlexProduction is the one RUNNING target of Production.
	TargetFlexProduction   = "flex-prod"
	TargetFlexProductionID = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"

	// DefaultGatewayVersion is the guide's fallback gatewayVersion; the
	// simulator accepts it as a known Flex version.
	DefaultGatewayVersion = "1.0.0"

	Username  = "alice"
	Password  = "alice-Passw0rd!"
	UserID    = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
	UserEmail = "alice@acme.example"

	// ClientID and ClientSecret are a connected app with every scope.
	ClientID     = "ci-app-6d1f0a2b3c4d4e5f"
	ClientSecret = "ci-secret-9a8b7c6d5e4f3a2b"
	// NoPoliciesClientID lacks ScopeManagePolicies.
	NoPoliciesClientID     = "viewer-app-1a2b3c4d5e6f"
	NoPoliciesClientSecret = "viewer-secret-0f9e8d7c6b5a"
	// NoExchangeClientID lacks ScopeExchangeContributor.
	NoExchangeClientID     = "deployer-app-2b3c4d5e6f7a"
	NoExchangeClientSecret = "deployer-secret-1e2d3c4b5a69"

	// PolicyGroupID is the Exchange group of MuleSoft's own policy templates.
	PolicyGroupID = "68ef9520-24e9-4cf2-b2f5-620025690913"

	// ExistingAssetID is an MCP asset of the default org, already published.
	ExistingAssetID      = "inventory-mcp"
	ExistingAssetVersion = "1.0.0"
	// PartnerAssetID is an MCP asset of the partner org, visible to the default user.
	PartnerAssetID      = "weather-mcp"
	PartnerAssetVersion = "2.1.0"
	// HiddenAssetID is an MCP asset of an org the default user cannot see.
	HiddenAssetID = "secret-mcp"

	// ExistingInstanceID is an API instance of ExistingAssetID in Sandbox,
	// deployed to TargetFlexSandbox and active, for the "start from instance" path.
	ExistingInstanceID    int64 = 18200001
	ExistingInstanceLabel       = "inventory-mcp-v1"
	ExistingDeploymentID  int64 = 730001
)

// Fixtures is the simulator's starting world. Everything is plain data so it
// can live in a JSON file (LoadFixtures) as well as in DefaultFixtures.
type Fixtures struct {
	Organizations   []FixtureOrg      `json:"organizations"`
	Users           []FixtureUser     `json:"users"`
	ConnectedApps   []FixtureApp      `json:"connectedApps"`
	Environments    []FixtureEnv      `json:"environments"`
	Targets         []FixtureTarget   `json:"targets"`
	GatewayVersions []string          `json:"gatewayVersions"`
	Assets          []FixtureAsset    `json:"assets"`
	Instances       []FixtureInstance `json:"instances"`
	PolicyTemplates []FixtureTemplate `json:"policyTemplates"`
}

// FixtureOrg is an organization (business group).
type FixtureOrg struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Domain string `json:"domain"`
}

// FixtureUser is a platform user; Organizations lists the organizations the
// user may see and act in, the first being the user's own.
type FixtureUser struct {
	ID            string   `json:"id"`
	Username      string   `json:"username"`
	Password      string   `json:"password"`
	FirstName     string   `json:"firstName"`
	LastName      string   `json:"lastName"`
	Email         string   `json:"email"`
	Organizations []string `json:"organizations"`
}

// FixtureApp is a connected app (client credentials) of one organization.
type FixtureApp struct {
	ClientID       string   `json:"clientId"`
	ClientSecret   string   `json:"clientSecret"`
	Name           string   `json:"name"`
	OrganizationID string   `json:"organizationId"`
	Scopes         []string `json:"scopes"`
}

// FixtureEnv is an environment of an organization.
type FixtureEnv struct {
	ID             string `json:"id"`
	OrganizationID string `json:"organizationId"`
	Name           string `json:"name"`
	IsProduction   bool   `json:"isProduction"`
	Type           string `json:"type"`
	ClientID       string `json:"clientId"`
}

// FixtureTarget is a Flex Gateway target. RowVersion is what the list shows
// (possibly "-"); RuntimeVersion is what the detail shows.
type FixtureTarget struct {
	ID             string `json:"id"`
	TargetID       string `json:"targetId"`
	OrganizationID string `json:"organizationId"`
	EnvironmentID  string `json:"environmentId"`
	Name           string `json:"name"`
	Kind           string `json:"kind"`
	Status         string `json:"status"`
	TargetType     string `json:"targetType"`
	RowVersion     string `json:"rowVersion"`
	RuntimeVersion string `json:"runtimeVersion"`
	PublicURL      string `json:"publicUrl"`
	// ConnectedMode models a self-managed Flex Gateway in connected mode: a
	// deployment turns "applied" and the gateway enforces, but the
	// autodiscovery status (apiVersionStatus, the instance status) stays
	// "unregistered" (docs/architecture.md, "Anypoint: instances, deployments and policies"). Without it the
	// target behaves like a managed gateway: "applied" together with "active".
	ConnectedMode bool `json:"connectedMode"`
	// NotReadyDeploys refuses the first N deployments to this target with
	// the 400 GatewayNotReadyError of a gateway still registering (docs/architecture.md, "Anypoint: error bodies").
	NotReadyDeploys int `json:"notReadyDeploys"`
}

// FixtureAsset is an Exchange asset that is already published.
type FixtureAsset struct {
	OrganizationID string `json:"organizationId"`
	GroupID        string `json:"groupId"`
	AssetID        string `json:"assetId"`
	Version        string `json:"version"`
	Name           string `json:"name"`
	Description    string `json:"description"`
	Type           string `json:"type"`
}

// FixtureInstance is an API instance that already exists, optionally
// deployed (and then already active).
type FixtureInstance struct {
	ID             int64  `json:"id"`
	OrganizationID string `json:"organizationId"`
	EnvironmentID  string `json:"environmentId"`
	GroupID        string `json:"groupId"`
	AssetID        string `json:"assetId"`
	AssetVersion   string `json:"assetVersion"`
	InstanceLabel  string `json:"instanceLabel"`
	Technology     string `json:"technology"`
	EndpointType   string `json:"endpointType"`
	URI            string `json:"uri"`
	ProxyURI       string `json:"proxyUri"`
	// DeploymentID and TargetID, when set, deploy the instance at start.
	DeploymentID   int64  `json:"deploymentId"`
	TargetID       string `json:"targetId"`
	GatewayVersion string `json:"gatewayVersion"`
}

// FixtureTemplate is one version of a policy template in the Exchange
// catalogue. Configuration is either a legacy property array or a JSON
// Schema object, kept raw because both forms are served as is.
type FixtureTemplate struct {
	ID          int64  `json:"id"`
	GroupID     string `json:"groupId"`
	AssetID     string `json:"assetId"`
	Version     string `json:"version"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Category    string `json:"category"`
	// Technologies the template runs on: "flexGateway", "mule4". Empty means both.
	Technologies []string `json:"technologies"`
	// MCPOnly templates fit only instances whose endpoint type is mcp.
	MCPOnly       bool            `json:"mcpOnly"`
	Configuration json.RawMessage `json:"configuration"`
	// MissingSchema marks an implementation asset (such as *-flex) that has
	// no configuration schema: applying it answers the 400
	// "Policy Template is missing required files: [schema]" (docs/architecture.md, "Anypoint: error bodies").
	MissingSchema bool `json:"missingSchema"`
}

// LoadFixtures reads fixtures from a JSON file in the shape of Fixtures.
func LoadFixtures(path string) (*Fixtures, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("error reading fixtures: %w", err)
	}
	var f Fixtures
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("error decoding fixtures %s: %w", path, err)
	}
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("error validating fixtures %s: %w", path, err)
	}
	return &f, nil
}

// validate catches fixture files that would make the simulator answer
// nonsense, such as an instance in an environment that does not exist.
func (f *Fixtures) validate() error {
	orgs := map[string]bool{}
	for _, o := range f.Organizations {
		if o.ID == "" {
			return fmt.Errorf("organization without id")
		}
		orgs[o.ID] = true
	}
	envs := map[string]bool{}
	for _, e := range f.Environments {
		if !orgs[e.OrganizationID] {
			return fmt.Errorf("environment %q: unknown organization %q", e.Name, e.OrganizationID)
		}
		envs[e.ID] = true
	}
	for _, u := range f.Users {
		if len(u.Organizations) == 0 {
			return fmt.Errorf("user %q has no organization", u.Username)
		}
		for _, o := range u.Organizations {
			if !orgs[o] {
				return fmt.Errorf("user %q: unknown organization %q", u.Username, o)
			}
		}
	}
	for _, a := range f.ConnectedApps {
		if !orgs[a.OrganizationID] {
			return fmt.Errorf("connected app %q: unknown organization %q", a.Name, a.OrganizationID)
		}
	}
	for _, t := range f.Targets {
		if !envs[t.EnvironmentID] {
			return fmt.Errorf("target %q: unknown environment %q", t.Name, t.EnvironmentID)
		}
	}
	for _, i := range f.Instances {
		if !envs[i.EnvironmentID] {
			return fmt.Errorf("instance %d: unknown environment %q", i.ID, i.EnvironmentID)
		}
	}
	for _, t := range f.PolicyTemplates {
		if t.AssetID == "" || t.Version == "" {
			return fmt.Errorf("policy template %d without assetId or version", t.ID)
		}
		if len(t.Configuration) > 0 && !json.Valid(t.Configuration) {
			return fmt.Errorf("policy template %s %s: configuration is not JSON", t.AssetID, t.Version)
		}
	}
	return nil
}

// DefaultFixtures returns the built-in world: two visible organizations and
// one hidden one, Sandbox and Production, four gateway targets, a few
// Exchange assets, one deployed MCP instance and the policy catalogue.
func DefaultFixtures() *Fixtures {
	all := AllScopes()
	without := func(scope string) []string {
		var out []string
		for _, s := range all {
			if s != scope {
				out = append(out, s)
			}
		}
		return out
	}
	return &Fixtures{
		Organizations: []FixtureOrg{
			{ID: DefaultOrgID, Name: DefaultOrgName, Domain: "acme"},
			{ID: PartnerOrgID, Name: PartnerOrgName, Domain: "acme-partners"},
			{ID: HiddenOrgID, Name: "Globex", Domain: "globex"},
		},
		Users: []FixtureUser{
			{ID: UserID, Username: Username, Password: Password, FirstName: "Alice", LastName: "Doe",
				Email: UserEmail, Organizations: []string{DefaultOrgID, PartnerOrgID}},
			{ID: "5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716", Username: "hank", Password: "hank-Passw0rd!",
				FirstName: "Hank", LastName: "Scorpio", Email: "hank@globex.example", Organizations: []string{HiddenOrgID}},
		},
		ConnectedApps: []FixtureApp{
			{ClientID: ClientID, ClientSecret: ClientSecret, Name: "mcpguard-ci", OrganizationID: DefaultOrgID, Scopes: all},
			{ClientID: NoPoliciesClientID, ClientSecret: NoPoliciesClientSecret, Name: "viewer",
				OrganizationID: DefaultOrgID, Scopes: without(ScopeManagePolicies)},
			{ClientID: NoExchangeClientID, ClientSecret: NoExchangeClientSecret, Name: "deployer",
				OrganizationID: DefaultOrgID, Scopes: without(ScopeExchangeContributor)},
		},
		Environments: []FixtureEnv{
			{ID: SandboxEnvID, OrganizationID: DefaultOrgID, Name: EnvSandbox, Type: "sandbox", ClientID: "a1b2c3d4e5f64a7b8c9d0e1f2a3b4c5d"},
			{ID: ProductionEnvID, OrganizationID: DefaultOrgID, Name: EnvProduction, IsProduction: true, Type: "production", ClientID: "b2c3d4e5f6a74b8c9d0e1f2a3b4c5d6e"},
			{ID: PartnerSandboxEnvID, OrganizationID: PartnerOrgID, Name: EnvSandbox, Type: "sandbox", ClientID: "c3d4e5f6a7b84c9d0e1f2a3b4c5d6e7f"},
		},
		Targets: []FixtureTarget{
			{ID: TargetFlexSandboxID, TargetID: "8c7b6a59-4837-4261-9f0e-d1c2b3a49586", OrganizationID: DefaultOrgID,
				EnvironmentID: SandboxEnvID, Name: TargetFlexSandbox, Kind: "selfManaged", Status: "RUNNING",
				TargetType: "flex", RowVersion: TargetFlexSandboxVersion, RuntimeVersion: TargetFlexSandboxVersion,
				PublicURL: "https://flex-sandbox.acme.example"},
			{ID: TargetFlexLegacyID, TargetID: "4a3b2c1d-0e9f-4877-b665-5a4b3c2d1e0f", OrganizationID: DefaultOrgID,
				EnvironmentID: SandboxEnvID, Name: TargetFlexLegacy, Kind: "selfManaged", Status: "RUNNING",
				TargetType: "flex", RowVersion: "-", RuntimeVersion: TargetFlexLegacyVersion,
				PublicURL: "https://flex-legacy.acme.example", ConnectedMode: true},
			{ID: TargetFlexDownID, TargetID: "9e8d7c6b-5a49-4382-a716-0f1e2d3c4b5a", OrganizationID: DefaultOrgID,
				EnvironmentID: SandboxEnvID, Name: TargetFlexDown, Kind: "selfManaged", Status: "NOT_RUNNING",
				TargetType: "flex", RowVersion: TargetFlexDownVersion, RuntimeVersion: TargetFlexDownVersion,
				PublicURL: "https://flex-down.acme.example"},
			{ID: TargetFlexProductionID, TargetID: "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b", OrganizationID: DefaultOrgID,
				EnvironmentID: ProductionEnvID, Name: TargetFlexProduction, Kind: "managed", Status: "RUNNING",
				TargetType: "private-space", RowVersion: TargetFlexSandboxVersion, RuntimeVersion: TargetFlexSandboxVersion,
				PublicURL: "https://flex-prod.acme.example"},
		},
		GatewayVersions: []string{DefaultGatewayVersion, TargetFlexLegacyVersion, "1.10.0", "1.11.0",
			TargetFlexDownVersion, "1.13.0", TargetFlexSandboxVersion},
		Assets: []FixtureAsset{
			{OrganizationID: DefaultOrgID, GroupID: DefaultOrgID, AssetID: ExistingAssetID, Version: ExistingAssetVersion,
				Name: "Inventory MCP", Description: "Inventory lookups over MCP", Type: "mcp"},
			{OrganizationID: DefaultOrgID, GroupID: DefaultOrgID, AssetID: "orders-api", Version: "1.0.0",
				Name: "Orders API", Description: "REST API for orders", Type: "rest-api"},
			{OrganizationID: PartnerOrgID, GroupID: PartnerOrgID, AssetID: PartnerAssetID, Version: PartnerAssetVersion,
				Name: "Weather MCP", Description: "Forecasts over MCP", Type: "mcp"},
			{OrganizationID: PartnerOrgID, GroupID: PartnerOrgID, AssetID: "billing-agent", Version: "1.0.0",
				Name: "Billing Agent", Description: "A2A billing agent", Type: "agent"},
			{OrganizationID: HiddenOrgID, GroupID: HiddenOrgID, AssetID: HiddenAssetID, Version: "1.0.0",
				Name: "Secret MCP", Description: "Not visible to Acme", Type: "mcp"},
		},
		Instances: []FixtureInstance{
			{ID: ExistingInstanceID, OrganizationID: DefaultOrgID, EnvironmentID: SandboxEnvID,
				GroupID: DefaultOrgID, AssetID: ExistingAssetID, AssetVersion: ExistingAssetVersion,
				InstanceLabel: ExistingInstanceLabel, Technology: "flexGateway", EndpointType: "mcp",
				URI: "https://inventory.internal/mcp", ProxyURI: "http://0.0.0.0:8081/inventory",
				DeploymentID: ExistingDeploymentID, TargetID: TargetFlexSandboxID, GatewayVersion: TargetFlexSandboxVersion},
		},
		PolicyTemplates: defaultCatalogue(),
	}
}
