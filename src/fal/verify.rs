//! Verifier of fal webhook signatures (being written).
