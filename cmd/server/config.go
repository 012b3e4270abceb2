package main

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// envPrefix is the prefix of every configuration variable.
const envPrefix = "MCPGUARD"

// Config is the server's configuration, read from MCPGUARD_* variables. The
// struct tags are envconfig's, so `mcpguard help` prints this table through
// envconfig.Usagef and loadConfig reads it through envconfig.Process: one
// reader for both.
type Config struct {
	DatabaseURL          string        `envconfig:"MCPGUARD_DATABASE_URL" required:"true" secret:"true" desc:"Postgres connection URL, e.g. postgres://mcpguard@db:5432/mcpguard"`
	HTTPAddr             string        `envconfig:"MCPGUARD_HTTP_ADDR" default:":8080" desc:"address the HTTP API listens on"`
	AnypointURL          string        `envconfig:"MCPGUARD_ANYPOINT_URL" default:"https://anypoint.mulesoft.com" desc:"base URL of Anypoint Platform (or of the simulator)"`
	AnypointClientID     string        `envconfig:"MCPGUARD_ANYPOINT_CLIENT_ID" desc:"default connected app, used when a request carries no credentials"`
	AnypointClientSecret string        `envconfig:"MCPGUARD_ANYPOINT_CLIENT_SECRET" secret:"true" desc:"secret of the default connected app"`
	APIKeys              string        `envconfig:"MCPGUARD_API_KEYS" secret:"true" desc:"tenant=key pairs separated by commas; required by serve"`
	CredentialsKey       string        `envconfig:"MCPGUARD_CREDENTIALS_KEY" secret:"true" desc:"base64 of 32 random bytes that encrypt stored credentials; required by serve. Several keys separated by commas rotate: the first seals, every one opens"`
	TenantScopes         string        `envconfig:"MCPGUARD_TENANT_SCOPES" desc:"what each tenant may touch through the default connected app: tenant=org:ID,env:ID-or-name[,env:...][,instance:ID...] entries separated by ';'. A tenant without an entry cannot use the default app"`
	AnypointRate         float64       `envconfig:"MCPGUARD_ANYPOINT_RATE" default:"5" desc:"Anypoint calls per second per organization, shared by every replica (counted per minute; lowered for a while after a 429)"`
	Workers              int           `envconfig:"MCPGUARD_WORKERS" default:"32" desc:"steps this replica runs at once; steps mostly wait for Anypoint, so many workers cost little"`
	LogLevel             string        `envconfig:"MCPGUARD_LOG_LEVEL" default:"info" desc:"trace, debug, info, warn or error"`
	LeaseDuration        time.Duration `envconfig:"MCPGUARD_LEASE_DURATION" default:"30s" desc:"how long a replica holds a job between heartbeats; a crashed replica's job is taken over after it expires"`
	ShutdownGrace        time.Duration `envconfig:"MCPGUARD_SHUTDOWN_GRACE" default:"20s" desc:"how long running steps and HTTP requests may finish after SIGTERM"`
	VerifyTimeout        time.Duration `envconfig:"MCPGUARD_VERIFY_TIMEOUT" default:"20m" desc:"how long the verify step waits for the deployment and instance to be live"`
	DryRunTimeout        time.Duration `envconfig:"MCPGUARD_DRY_RUN_TIMEOUT" default:"20s" desc:"how long a dry run (?dryRun=true) may look things up in Anypoint before it answers its plan with a timeout problem"`
	APIDatabaseTimeout   time.Duration `envconfig:"MCPGUARD_API_DATABASE_TIMEOUT" default:"5s" desc:"how long an API request may wait for the database (a row lock, a free connection) before it answers 503"`
	Retention            time.Duration `envconfig:"MCPGUARD_RETENTION" default:"2160h" desc:"how long the steps and events of a finished protection, and finished webhook deliveries, are kept (2160h is 90 days); the protection itself stays"`
	CredentialsTTL       time.Duration `envconfig:"MCPGUARD_CREDENTIALS_TTL" default:"168h" desc:"how long the stored credentials of a failed or cancelled job are kept for a retry (168h is 7 days)"`
	WebhookAllowHosts    string        `envconfig:"MCPGUARD_WEBHOOK_ALLOW_HOSTS" desc:"hosts, separated by commas, that webhook URLs may name over http or that may resolve to loopback or private addresses (e.g. 127.0.0.1 for a local receiver); every other webhook URL must be https to a public address"`
	WebhookTimeout       time.Duration `envconfig:"MCPGUARD_WEBHOOK_TIMEOUT" default:"10s" desc:"how long one webhook delivery attempt may take, connection to the end of the answer"`
	WebhookRetryFor      time.Duration `envconfig:"MCPGUARD_WEBHOOK_RETRY_FOR" default:"24h" desc:"how long after its first attempt a webhook delivery is retried (exponential backoff from 5s to 1h) before it fails"`
	WebhookDisableAfter  time.Duration `envconfig:"MCPGUARD_WEBHOOK_DISABLE_AFTER" default:"72h" desc:"a webhook whose deliveries all failed for this long is disabled (webhook.disabled goes to the tenant's other webhooks)"`
	SSEHeartbeat         time.Duration `envconfig:"MCPGUARD_SSE_HEARTBEAT" default:"15s" desc:"how often an idle live event stream (text/event-stream) sends a comment line"`
	SSEMaxStreams        int           `envconfig:"MCPGUARD_SSE_MAX_STREAMS" default:"500" desc:"live event streams this replica serves at once; 503 beyond"`
	SSEMaxDuration       time.Duration `envconfig:"MCPGUARD_SSE_MAX_DURATION" default:"1h" desc:"how long one live event stream lasts before the server closes it (the client resumes with Last-Event-ID)"`
}

// httpWriteTimeout bounds writing an API answer; a dry run must end before it.
const httpWriteTimeout = 60 * time.Second

// loadConfig reads the MCPGUARD_* variables with envconfig, the same
// reader whose tags print the help table, then checks what envconfig cannot
// (URLs, log level, positive numbers), reporting those problems at once.
// Values of secret variables never appear in its errors; envconfig's own
// errors are rewritten for that reason (its texts quote the value).
func loadConfig() (Config, error) {
	var cfg Config
	// No prefix argument: the tags carry it. With one, envconfig would also
	// read the bare names (DATABASE_URL, LOG_LEVEL) that other software sets.
	if err := envconfig.Process("", &cfg); err != nil {
		return cfg, errors.New("invalid configuration: " + envconfigProblem(err))
	}
	var problems []string
	if cfg.DatabaseURL == "" {
		problems = append(problems, envPrefix+"_DATABASE_URL is required")
	}
	if !(cfg.AnypointRate > 0) || math.IsInf(cfg.AnypointRate, 0) {
		problems = append(problems, fmt.Sprintf("%s_ANYPOINT_RATE must be a positive number; %v is not", envPrefix, cfg.AnypointRate))
	}
	if cfg.Workers < 1 {
		problems = append(problems, fmt.Sprintf("%s_WORKERS must be a positive integer; %d is not", envPrefix, cfg.Workers))
	}
	if cfg.SSEMaxStreams < 1 {
		problems = append(problems, fmt.Sprintf("%s_SSE_MAX_STREAMS must be a positive integer; %d is not", envPrefix, cfg.SSEMaxStreams))
	}
	for name, d := range map[string]time.Duration{
		"LEASE_DURATION": cfg.LeaseDuration, "SHUTDOWN_GRACE": cfg.ShutdownGrace, "VERIFY_TIMEOUT": cfg.VerifyTimeout,
		"RETENTION": cfg.Retention, "CREDENTIALS_TTL": cfg.CredentialsTTL, "API_DATABASE_TIMEOUT": cfg.APIDatabaseTimeout,
		"WEBHOOK_TIMEOUT": cfg.WebhookTimeout, "WEBHOOK_RETRY_FOR": cfg.WebhookRetryFor, "WEBHOOK_DISABLE_AFTER": cfg.WebhookDisableAfter,
		"DRY_RUN_TIMEOUT": cfg.DryRunTimeout,
		"SSE_HEARTBEAT":   cfg.SSEHeartbeat, "SSE_MAX_DURATION": cfg.SSEMaxDuration,
	} {
		if d <= 0 {
			problems = append(problems, fmt.Sprintf("%s_%s must be a positive duration such as 30s or 5m; %s is not", envPrefix, name, d))
		}
	}
	if cfg.DryRunTimeout >= httpWriteTimeout {
		// The answer of a dry run is written after its look-ups: a longer
		// bound would have the server cut it off.
		problems = append(problems, fmt.Sprintf("%s_DRY_RUN_TIMEOUT must be shorter than the HTTP write timeout (%s); %s is not", envPrefix, httpWriteTimeout, cfg.DryRunTimeout))
	}
	if cfg.DatabaseURL != "" {
		if u, err := url.Parse(cfg.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			problems = append(problems, envPrefix+"_DATABASE_URL must be a postgres:// URL")
		}
	}
	if u, err := url.Parse(cfg.AnypointURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, envPrefix+"_ANYPOINT_URL must be an absolute http(s) URL")
	}
	if _, err := zerolog.ParseLevel(cfg.LogLevel); err != nil || cfg.LogLevel == "" {
		problems = append(problems, fmt.Sprintf("%s_LOG_LEVEL must be trace, debug, info, warn or error; %q is not", envPrefix, cfg.LogLevel))
	}
	if (cfg.AnypointClientID == "") != (cfg.AnypointClientSecret == "") {
		problems = append(problems, envPrefix+"_ANYPOINT_CLIENT_ID and "+envPrefix+"_ANYPOINT_CLIENT_SECRET must be set together")
	}
	for i, h := range webhookAllowHosts(cfg.WebhookAllowHosts) {
		if strings.ContainsAny(h, "/:@ ") && !strings.HasPrefix(h, "[") {
			problems = append(problems, fmt.Sprintf("%s_WEBHOOK_ALLOW_HOSTS entry %d must be a host name or IP address, without scheme, port or path", envPrefix, i+1))
		}
	}
	if len(problems) > 0 {
		return cfg, errors.New("invalid configuration: " + strings.Join(problems, "; "))
	}
	return cfg, nil
}

// webhookAllowHosts splits MCPGUARD_WEBHOOK_ALLOW_HOSTS.
func webhookAllowHosts(raw string) []string {
	var hosts []string
	for _, h := range strings.Split(raw, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// envconfigProblem says which variable envconfig could not read, and why,
// without its value: the variable may hold a secret.
func envconfigProblem(err error) string {
	var pe *envconfig.ParseError
	if !errors.As(err, &pe) {
		// "required key MCPGUARD_X missing value" names no value.
		if name, ok := strings.CutPrefix(err.Error(), "required key "); ok {
			return strings.TrimSuffix(name, " missing value") + " is required"
		}
		return err.Error()
	}
	switch pe.TypeName {
	case "int":
		return pe.KeyName + " must be a positive integer; " + strconv.Quote(pe.Value) + " is not"
	case "float64":
		return pe.KeyName + " must be a positive number; " + strconv.Quote(pe.Value) + " is not"
	case "time.Duration":
		return pe.KeyName + " must be a positive duration such as 30s or 5m; " + strconv.Quote(pe.Value) + " is not"
	}
	return pe.KeyName + " cannot be read as " + pe.TypeName
}

// serveSecrets are what serve needs beyond the shared configuration.
type serveSecrets struct {
	keys   map[string]string
	sealer *store.Sealer
	scopes map[string]workflow.TenantScope
}

// parseServeSecrets checks the variables only serve needs. Its errors name the
// variable and the bad entry by position, never a key.
func parseServeSecrets(cfg Config) (serveSecrets, error) {
	var problems []string
	keys, err := parseAPIKeys(cfg.APIKeys)
	if err != nil {
		problems = append(problems, err.Error())
	}
	var sealer *store.Sealer
	if cfg.CredentialsKey == "" {
		problems = append(problems, envPrefix+"_CREDENTIALS_KEY is required: the base64 of 32 random bytes (openssl rand -base64 32)")
	} else if sealer, err = store.ParseSealerKey(strings.TrimSpace(cfg.CredentialsKey)); err != nil {
		problems = append(problems, envPrefix+"_CREDENTIALS_KEY must be the base64 of exactly 32 bytes (openssl rand -base64 32), or several such keys separated by commas, the sealing one first: "+err.Error())
	}
	scopes, err := parseTenantScopes(cfg.TenantScopes, keys)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return serveSecrets{}, errors.New("invalid configuration: " + strings.Join(problems, "; "))
	}
	return serveSecrets{keys: keys, sealer: sealer, scopes: scopes}, nil
}

// parseTenantScopes reads MCPGUARD_TENANT_SCOPES:
//
//	tenant=org:ORG_ID,env:ENV_ID_OR_NAME[,env:...][,instance:API_INSTANCE_ID...];tenant2=...
//
// Each entry needs exactly one org and at least one env. Its errors name the
// variable and the entry by position. A tenant must have an API key, so that
// a typo in a tenant name cannot leave the real tenant without its scope
// unnoticed.
func parseTenantScopes(raw string, keys map[string]string) (map[string]workflow.TenantScope, error) {
	const name = envPrefix + "_TENANT_SCOPES"
	scopes := map[string]workflow.TenantScope{}
	if strings.TrimSpace(raw) == "" {
		return scopes, nil
	}
	for i, entry := range strings.Split(raw, ";") {
		n := i + 1
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue // a trailing ';'
		}
		tenant, items, ok := strings.Cut(entry, "=")
		tenant = strings.TrimSpace(tenant)
		switch {
		case !ok:
			return nil, fmt.Errorf("%s entry %d is not tenant=org:ID,env:ID-or-name", name, n)
		case tenant == "" || !validTenant(tenant):
			return nil, fmt.Errorf("%s entry %d: the tenant name may only have letters, digits, '.', '-' and '_'", name, n)
		}
		if _, dup := scopes[tenant]; dup {
			return nil, fmt.Errorf("%s entry %d repeats tenant %q", name, n, tenant)
		}
		if keys != nil {
			if _, known := keys[tenant]; !known {
				return nil, fmt.Errorf("%s entry %d names tenant %q, which has no key in %s_API_KEYS", name, n, tenant, envPrefix)
			}
		}
		var scope workflow.TenantScope
		for j, item := range strings.Split(items, ",") {
			kind, value, ok := strings.Cut(strings.TrimSpace(item), ":")
			kind, value = strings.TrimSpace(kind), strings.TrimSpace(value)
			if !ok || value == "" {
				return nil, fmt.Errorf("%s entry %d (tenant %q) item %d is not org:ID, env:ID-or-name or instance:ID", name, n, tenant, j+1)
			}
			switch kind {
			case "org":
				if scope.OrganizationID != "" {
					return nil, fmt.Errorf("%s entry %d (tenant %q) names more than one org", name, n, tenant)
				}
				scope.OrganizationID = value
			case "env":
				scope.Environments = append(scope.Environments, value)
			case "instance":
				id, err := strconv.ParseInt(value, 10, 64)
				if err != nil || id < 1 {
					return nil, fmt.Errorf("%s entry %d (tenant %q) item %d: instance must be a positive integer API instance id", name, n, tenant, j+1)
				}
				scope.Instances = append(scope.Instances, id)
			default:
				return nil, fmt.Errorf("%s entry %d (tenant %q) item %d: unknown kind %q, want org, env or instance", name, n, tenant, j+1, kind)
			}
		}
		if scope.OrganizationID == "" {
			return nil, fmt.Errorf("%s entry %d (tenant %q) names no org", name, n, tenant)
		}
		if len(scope.Environments) == 0 {
			return nil, fmt.Errorf("%s entry %d (tenant %q) names no env", name, n, tenant)
		}
		scopes[tenant] = scope
	}
	return scopes, nil
}

// parseAPIKeys reads "tenant=key,tenant2=key2". Keys are at least 16
// characters so that a typo cannot leave a guessable key in production.
func parseAPIKeys(raw string) (map[string]string, error) {
	const name = envPrefix + "_API_KEYS"
	const minKeyLength = 16
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New(name + " is required: tenant=key pairs separated by commas")
	}
	keys := map[string]string{}
	owner := map[string]string{}
	for i, entry := range strings.Split(raw, ",") {
		n := i + 1
		tenant, key, ok := strings.Cut(strings.TrimSpace(entry), "=")
		tenant, key = strings.TrimSpace(tenant), strings.TrimSpace(key)
		switch {
		case !ok:
			return nil, fmt.Errorf("%s entry %d is not tenant=key", name, n)
		case tenant == "":
			return nil, fmt.Errorf("%s entry %d has no tenant before '='", name, n)
		case !validTenant(tenant):
			return nil, fmt.Errorf("%s entry %d: the tenant name may only have letters, digits, '.', '-' and '_'", name, n)
		case key == "":
			return nil, fmt.Errorf("%s entry %d (tenant %q) has an empty key", name, n, tenant)
		case len(key) < minKeyLength:
			return nil, fmt.Errorf("%s entry %d (tenant %q) has a key shorter than %d characters", name, n, tenant, minKeyLength)
		}
		if _, dup := keys[tenant]; dup {
			return nil, fmt.Errorf("%s entry %d repeats tenant %q", name, n, tenant)
		}
		if other, dup := owner[key]; dup {
			return nil, fmt.Errorf("%s entry %d (tenant %q) reuses the key of tenant %q", name, n, tenant, other)
		}
		keys[tenant], owner[key] = key, tenant
	}
	return keys, nil
}

func validTenant(s string) bool {
	for _, c := range s {
		ok := c == '.' || c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !ok {
			return false
		}
	}
	return true
}

// newLogger returns the JSON logger of the process.
func newLogger(cfg Config, stdout interface{ Write([]byte) (int, error) }) zerolog.Logger {
	level, _ := zerolog.ParseLevel(cfg.LogLevel)
	return zerolog.New(stdout).Level(level).With().Timestamp().Str("service", "mcpguard").Logger()
}
