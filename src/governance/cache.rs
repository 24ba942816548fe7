//! The seed cache: a request identical to one that completed within the TTL — same
//! model, same normalised input, an **explicit** seed — is answered from the stored result as a
//! new, already-completed generation at zero cost. Without a seed fal picks a random one, so
//! such requests are never cached. Keys are per tenant: tenants never share entries.
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The cache key of a normalised input, or `None` when it has no explicit seed.
pub fn key(model: &str, input: &Value) -> Option<String> {
    input.get("seed").filter(|s| !s.is_null())?;
    // serde_json's map is ordered, so this text is canonical for equal inputs.
    let canonical = serde_json::to_string(input).ok()?;
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    Some(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_seeded_inputs_have_keys_and_equal_inputs_share_one() {
        assert_eq!(key("m", &json!({"prompt": "a"})), None);
        let a = key("m", &json!({"prompt": "a", "seed": 1, "num_images": 1}));
        let b = key("m", &json!({"num_images": 1, "seed": 1, "prompt": "a"}));
        assert!(a.is_some() && a == b);
        assert_ne!(
            a,
            key("m", &json!({"prompt": "a", "seed": 2, "num_images": 1}))
        );
        assert_ne!(
            a,
            key("other", &json!({"prompt": "a", "seed": 1, "num_images": 1}))
        );
    }
}
