//! Tools beside the service, not part of it: the fal simulator (fal, faithfully, for `dev`, the
//! tests and the benchmark), the throwaway local Postgres, `fluxgate dev`, and `fluxgate bench`.
//! The service's rooms never import these; these import the service like any user of it.
pub mod bench;
pub mod dev;
pub mod devdb;
pub mod simulator;
