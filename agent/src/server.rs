//! Wiring.
pub async fn run(_c: crate::config::Config) -> Result<(), crate::error::Error> { Ok(()) }
