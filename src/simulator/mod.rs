//! The fal simulator (being written).
