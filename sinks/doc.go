// Package sinks holds Ferry's sinks: where a pipe's entities go. The
// dataset sink writes versions into the store inside the engine's
// transactions (with deletion tracking and a circuit breaker); the null
// sink discards. Register adds them to a registry.
package sinks
