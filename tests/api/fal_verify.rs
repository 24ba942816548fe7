//! Tests for fal_verify.
