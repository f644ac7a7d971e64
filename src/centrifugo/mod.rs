//! Centrifugo as this sidecar speaks to it: its vocabulary ([`protocol`], a leaf), the
//! server-API client ([`api`]) and the Centrifugo config generated from the sidecar's
//! settings ([`config`]).

pub mod api;
pub mod config;
pub mod protocol;
