package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// buildInfo is what `ferry version` reports, read from the module build
// information the Go toolchain embeds (runtime/debug.ReadBuildInfo).
type buildInfo struct {
	// Version is the main module's version: a tag (v1.2.3), a pseudo-version
	// (v0.0.0-20260101120000-abcdef123456, "+dirty" when built from a
	// modified tree) or "(devel)" when the toolchain knew none.
	Version string `json:"version"`
	// Commit, CommitTime and Modified come from the VCS stamp (absent when
	// built with -buildvcs=false or outside a repository).
	Commit     string `json:"commit,omitempty"`
	CommitTime string `json:"commit_time,omitempty"`
	Modified   bool   `json:"modified"`
	Go         string `json:"go"`
	Module     string `json:"module,omitempty"`
}

// readBuildInfo reads the binary's build information.
func readBuildInfo() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return buildInfo{Version: "(unknown)"}
	}
	return buildInfoFrom(bi)
}

func buildInfoFrom(bi *debug.BuildInfo) buildInfo {
	info := buildInfo{Version: bi.Main.Version, Go: bi.GoVersion, Module: bi.Main.Path}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.time":
			info.CommitTime = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// versionString is the one-line version: "v1.2.3 (commit abcdef123456,
// modified, go1.26.8)".
func versionString(info buildInfo) string {
	var parts []string
	if info.Commit != "" {
		c := info.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		parts = append(parts, "commit "+c)
	}
	if info.Modified {
		parts = append(parts, "modified")
	}
	parts = append(parts, info.Go)
	return fmt.Sprintf("%s (%s)", info.Version, strings.Join(parts, ", "))
}

func (c *cli) versionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "version",
		GroupID: groupTools,
		Short:   "Print the version, commit and Go version of this binary",
		Long: `Version prints the module version, the VCS commit and whether the tree was
modified, and the Go version, from the build information the Go toolchain
embeds ('go install ./cmd/ferry' in a git checkout stamps the commit).
'ferry --version' prints the same line.`,
		Example: `  ferry version
  ferry version --json`,
		Args: usageArgs(0, 0, "takes no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			info := readBuildInfo()
			if c.g.json {
				c.printJSON(info)
				return nil
			}
			fmt.Fprintln(c.stdout, "ferry", versionString(info))
			return nil
		},
	}
	return jsonOK(cmd)
}
