//! fluxgate: a gateway between applications and fal.ai's FLUX.2 models.
pub mod devdb;
pub mod fal;
pub mod simulator;
