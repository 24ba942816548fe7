//! fal's webhook signature scheme: the exact message that is signed, shared by
//! the verifier and by the simulator's signer so both agree byte for byte.
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

/// The four headers fal sends with every webhook.
pub const HEADER_REQUEST_ID: &str = "x-fal-webhook-request-id";
pub const HEADER_USER_ID: &str = "x-fal-webhook-user-id";
pub const HEADER_TIMESTAMP: &str = "x-fal-webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "x-fal-webhook-signature";

/// `request_id \n user_id \n timestamp \n hex(sha256(body))`, UTF-8, no trailing newline.
pub fn signed_message(request_id: &str, user_id: &str, timestamp: &str, body: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(body));
    format!("{request_id}\n{user_id}\n{timestamp}\n{digest}")
}

/// Signs like fal does: lowercase hex of the 64-byte Ed25519 signature over [`signed_message`].
pub fn sign_hex(
    key: &SigningKey,
    request_id: &str,
    user_id: &str,
    timestamp: &str,
    body: &[u8],
) -> String {
    let message = signed_message(request_id, user_id, timestamp, body);
    hex::encode(key.sign(message.as_bytes()).to_bytes())
}
