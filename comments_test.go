package mcpguard_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCommentsCiteOnlyTheRepository: no Go comment points at documents
// outside the repository, and every section of docs/architecture.md a comment
// cites by title exists, so a reader of the code can follow each reference.
func TestCommentsCiteOnlyTheRepository(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "#") {
			headings[strings.TrimSpace(strings.TrimLeft(line, "#"))] = true
		}
	}
	outside := regexp.MustCompile(`\.\./shared|/work/shared|anypoint-api\.md|design\.md|design section`)
	// A citation may wrap onto the next comment line.
	citation := regexp.MustCompile(`docs/architecture\.md,\s+"([^"]+)"`)
	fset := token.NewFileSet()
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, group := range f.Comments {
			text := group.Text()
			if m := outside.FindString(text); m != "" {
				t.Errorf("%s: a comment points outside the repository (%s): %q", fset.Position(group.Pos()), m, text)
			}
			for _, c := range citation.FindAllStringSubmatch(text, -1) {
				title := strings.Join(strings.Fields(c[1]), " ")
				if !headings[title] {
					t.Errorf("%s: cites docs/architecture.md section %q, which does not exist", fset.Position(group.Pos()), title)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
