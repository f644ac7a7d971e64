//! What a proxy handler decided about one call: accepted, rejected for a Centrifugo
//! [`Reason`], or failed with a [`ProxyFailure`]. The proxy handlers return it and count it
//! (`proxy::count`); the label sets themselves live below them, in
//! [`crate::centrifugo::protocol`] and [`crate::metrics`].

use crate::centrifugo::protocol::Reason;
use crate::metrics::ProxyFailure;

/// What a proxy call decided (metrics only).
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Accepted,
    Rejected(Reason),
    Error(ProxyFailure),
}
