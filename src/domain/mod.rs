//! Validated domain types: a value of one of these types is valid by construction.
pub mod api_key;
pub mod batch;
pub mod browser_token;
pub mod cidr;
pub mod event_type;
pub mod field_error;
pub mod generation;
pub mod ids;
pub mod money;
pub mod origin;
pub mod request_policy;
pub mod scope;
pub mod states;
pub mod subscription;
pub mod tenant;

pub use field_error::FieldError;
