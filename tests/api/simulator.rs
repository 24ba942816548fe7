//! Tests for simulator.
