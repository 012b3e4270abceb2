// Package mcpguard holds the domain of the service: a Protection is one durable
// job that puts an MCP server behind Anypoint Flex Gateway policies, following
// the guide "Protect MCP Server With Policies" step by step.
//
// This package has no dependencies on Postgres, HTTP or Anypoint: adapters live
// under internal/ and main wires them together.
package mcpguard
