// Package migrations holds the ordered SQL migrations of mcpguard's schema,
// embedded so the binary migrates its database without files on disk.
package migrations

import "embed"

//go:embed *.sql
var files embed.FS

// FS is the set of goose SQL migrations, named NNNNN_description.sql.
var FS = files
