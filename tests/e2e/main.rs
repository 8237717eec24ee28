//! The end-to-end tests: the real `moat` binary against real peers, one
//! module a concern. What they share is in the `moat-testkit` crate.

mod acme;
mod admin;
mod admin_tls;
mod alerts;
mod bad_input;
mod certbot;
mod cli;
mod client_ocsp;
mod clusters;
mod confinement;
mod crl_distribution_points;
mod deploy;
mod device_identity;
mod discovery;
mod faults;
mod hardening;
mod health_checks;
mod lifecycle;
mod live_control;
mod mqtt_awareness;
mod mutual_tls;
mod policy_reload;
mod rate_limits;
mod reload;
mod rotation_under_load;
mod routes;
mod scanners;
mod stapling;
mod tls_policy;
mod tls_termination;
mod websockets;
mod websockets_browser;
