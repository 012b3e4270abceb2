package main

import (
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard/internal/workflow"
)

// newCatalogue builds the step catalogue serve runs. It is a variable only so
// that the wiring test can run jobs without reaching Anypoint.
var newCatalogue = catalogue

// catalogue is the one place the guide's steps are wired into the server.
// Until the guide's steps are merged it returns an empty catalogue, with
// which the service refuses new protections ("No step of the guide applies").
// Wiring the guide is a one-line change of the return statement:
//
//	return workflow.GuideCatalogue(workflow.GuideConfig{Anypoint: <client for cfg.AnypointURL>,
//		DefaultApp: <cfg.AnypointClientID/Secret when set>, VerifyTimeout: cfg.VerifyTimeout})
func catalogue(cfg Config, logger zerolog.Logger) workflow.Catalogue {
	return workflow.Catalogue{}
}
