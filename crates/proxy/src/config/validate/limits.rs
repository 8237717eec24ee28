//! The checks of `mqtt.limits`: rates and bursts at least 1, bursts that
//! hold one packet, a disconnect delay that is not zero.

use std::path::Path;

use super::super::error::ConfigError;
use super::super::schema::MqttLimits;

/// Problems with `limits` (under `{prefix}.mqtt.limits`).
pub(super) fn check(
    path: &Path,
    prefix: &str,
    limits: &MqttLimits,
    max_packet: u32,
    errors: &mut Vec<ConfigError>,
) {
    let at = |field: &str| format!("{prefix}.mqtt.limits.{field}");
    let mut push = |field: &str, msg: &str, hint: &str| {
        errors.push(ConfigError::at(path, at(field), msg).hint(hint));
    };
    for (field, value) in [
        ("publish_rate", limits.publish_rate),
        ("publish_burst", limits.publish_burst),
        ("bytes_rate", limits.bytes_rate),
        ("bytes_burst", limits.bytes_burst),
        ("connections_per_minute", limits.connections_per_minute),
    ] {
        if value == Some(0) {
            push(field, "must be at least 1", "remove it for no limit");
        }
    }
    if limits.publish_burst.is_some() && limits.publish_rate.is_none() {
        push(
            "publish_burst",
            "is set without publish_rate",
            "set publish_rate too, or remove publish_burst",
        );
    }
    if limits.bytes_burst.is_some() && limits.bytes_rate.is_none() {
        push(
            "bytes_burst",
            "is set without bytes_rate",
            "set bytes_rate too, or remove bytes_burst",
        );
    }
    if let Some(burst) = limits
        .bytes_burst
        .filter(|&b| b > 0 && b < max_packet.min(64 * 1024))
    {
        push(
            "bytes_burst",
            &format!("{burst} bytes is less than one read of a large packet"),
            "make it at least 65536 (or max_packet_size, if smaller)",
        );
    }
    match (
        &limits.disconnect_after,
        limits.publish_rate.or(limits.bytes_rate),
    ) {
        (Some(d), _) if d.0.is_zero() => push(
            "disconnect_after",
            "must be longer than zero",
            "remove it to only slow a device down",
        ),
        (Some(_), None) => push(
            "disconnect_after",
            "is set without publish_rate or bytes_rate",
            "set a rate, or remove disconnect_after",
        ),
        _ => {}
    }
}
