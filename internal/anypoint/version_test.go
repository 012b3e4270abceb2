package anypoint

import "testing"

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a, b string
		want int
	}{
		{"1.10.0", "1.9.3", 1}, {"1.0.0", "1.0.0", 0}, {"v2.0.0", "1.99.99", 1},
		{"1.0.0-rc1", "1.0.0", -1}, {"1.0.0+build.7", "1.0.0", 0}, {"1.0.1-20260414150102", "1.0.0", 1},
		// Numeric pre-release identifiers compare as numbers (semver.org §11).
		{"1.0.0-beta.10", "1.0.0-beta.9", 1}, {"1.0.0-beta.2", "1.0.0-beta.11", -1}, {"1.0.0-alpha", "1.0.0-alpha.1", -1},
		{"1.0.0-alpha.beta", "1.0.0-beta", -1}, {"1.0.0-rc.1", "1.0.0-beta.11", 1},
		// Short forms, and what is not a version at all.
		{"1.1", "1.0.9", 1}, {"v1", "0.9.0", 1}, {"1.0.0", "-", 1}, {"-", "latest", -1},
	}
	for _, c := range cases {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := CompareVersions(c.b, c.a); got != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}
