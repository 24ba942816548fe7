//! Tests for devdb.
