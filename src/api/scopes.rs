//! Which scope each `/v1` route needs, in one table beside the routing table (`api/mod.rs`).
//! The authentication middleware asks it with the route's pattern, so a route cannot be reached
//! with a key that lacks its scope; a test holds that every documented route is in it.
use actix_web::http::Method;

use crate::domain::scope::Scope;

/// What a route asks of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any valid key (`GET /v1/me`, and paths no route serves, which answer 404).
    AnyKey,
    Scope(Scope),
}

/// The scope `method` on the route `pattern` (as routed: `/v1/generations/{id}`) needs.
pub fn needed(method: &Method, pattern: &str) -> Need {
    use Scope::*;
    let read = matches!(*method, Method::GET | Method::HEAD);
    let scope = match pattern {
        "/v1/me" | "/v1/tokens" | "/v1/tokens/{id}" => return Need::AnyKey,
        "/v1/generations" if !read => GenerationsWrite,
        "/v1/generations" | "/v1/generations/{id}" | "/v1/generations/{id}/events" => {
            GenerationsRead
        }
        "/v1/generations/{id}/cancel" | "/v1/edits" | "/v1/estimates" => GenerationsWrite,
        "/v1/batches" if !read => GenerationsWrite,
        "/v1/batches/{id}/cancel" => GenerationsWrite,
        "/v1/batches" | "/v1/batches/{id}" => GenerationsRead,
        "/v1/events" | "/v1/events/stream" => EventsRead,
        "/v1/subscriptions"
        | "/v1/subscriptions/{id}"
        | "/v1/subscriptions/{id}/rotate-secret"
        | "/v1/subscriptions/{id}/test"
        | "/v1/subscriptions/{id}/recover"
        | "/v1/subscriptions/{id}/deliveries"
        | "/v1/deliveries/{id}"
        | "/v1/deliveries/{id}/retry" => SubscriptionsManage,
        "/v1/usage" | "/v1/webhook-secret" => Admin,
        _ => return Need::AnyKey,
    };
    Need::Scope(scope)
}

/// Whether a browser token may use `method` on `pattern` at all (its scopes are checked as well):
/// make and read its end user's generations, price them, follow their events. Never the event
/// log, subscriptions, usage, secrets or other tokens, and never cancelling.
pub fn token_may(method: &Method, pattern: &str) -> bool {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match pattern {
        "/v1/me" | "/v1/generations/{id}" | "/v1/generations/{id}/events" | "/v1/events/stream" => {
            read
        }
        "/v1/generations" => true,
        "/v1/edits" | "/v1/estimates" => !read,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_and_writing_generations_are_different_scopes() {
        assert_eq!(
            needed(&Method::POST, "/v1/generations"),
            Need::Scope(Scope::GenerationsWrite)
        );
        assert_eq!(
            needed(&Method::GET, "/v1/generations"),
            Need::Scope(Scope::GenerationsRead)
        );
        assert_eq!(needed(&Method::GET, "/v1/me"), Need::AnyKey);
        assert_eq!(needed(&Method::POST, "/v1/tokens"), Need::AnyKey);
        assert_eq!(
            needed(&Method::GET, "/v1/webhook-secret"),
            Need::Scope(Scope::Admin)
        );
    }

    #[test]
    fn a_browser_token_reaches_its_generations_and_its_stream_and_nothing_else() {
        assert!(token_may(&Method::POST, "/v1/generations"));
        assert!(token_may(&Method::GET, "/v1/generations/{id}/events"));
        assert!(token_may(&Method::GET, "/v1/events/stream"));
        for (method, pattern) in [
            (Method::GET, "/v1/events"),
            (Method::POST, "/v1/generations/{id}/cancel"),
            (Method::POST, "/v1/tokens"),
            (Method::GET, "/v1/subscriptions"),
            (Method::GET, "/v1/usage"),
        ] {
            assert!(!token_may(&method, pattern), "{method} {pattern}");
        }
    }
}
