//go:build race

package main

// raceEnabled: the race detector slows the chaos test's workers down.
const raceEnabled = true
