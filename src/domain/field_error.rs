//! What is wrong with one field of a request: the domain's validators return these, and the
//! API answers them as a 422 problem listing every one (`ApiError::validation`).
use serde::Serialize;

/// One bad field of a request body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
