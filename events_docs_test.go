package vipd

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// reasonPatterns find the Event and finding reasons in vipd's code: an
// Event posted with its type, a planner Problem, a doctor Finding.
var reasonPatterns = []*regexp.Regexp{
	regexp.MustCompile(`EventType(?:Warning|Normal), "([A-Z][A-Za-z0-9]+)"`),
	regexp.MustCompile(`Problem\{"([A-Z][A-Za-z0-9]+)"`),
	regexp.MustCompile(`Reason: +"([A-Z][A-Za-z0-9]+)"`),
}

// TestEveryEventReasonIsDocumented: docs/troubleshooting.md explains every
// reason vipd's code can report.
func TestEveryEventReasonIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("docs/troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, root := range []string{"internal", "cmd"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, re := range reasonPatterns {
				for _, m := range re.FindAllStringSubmatch(string(b), -1) {
					reasons[m[1]] = path
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(reasons) < 10 {
		t.Fatalf("found only %d reasons in the code: the patterns no longer match it", len(reasons))
	}
	for r, path := range reasons {
		if !strings.Contains(string(doc), "| `"+r+"` |") {
			t.Errorf("reason %s (%s) is not explained in docs/troubleshooting.md", r, path)
		}
	}
}
