//! The `limits` object of an app entry (lepton.json, tauon files): which limits the operator
//! set for one app, validated with the field named, and merged over the host-wide defaults
//! (`lepton`/`tauon` command-line options) into the [`AppLimits`] the app runs with.
//!
//! ```json
//! "limits": { "request_timeout_ms": 30000, "memory_mib": 128, "max_concurrent_requests": 100,
//!             "max_queued_requests": 100, "max_request_body_bytes": 10485760 }
//! ```

use std::time::Duration;

/// One app's limits, after defaults were applied. Field names match the `limits` object of
/// `lepton.json` and tauon files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AppLimits {
    /// How long one request may take, from its arrival to its last response byte.
    pub request_timeout_ms: u64,
    /// The most memory one instance may hold: all its linear memories and tables together.
    pub memory_mib: u64,
    /// Requests of the app running at once (chained requests included).
    pub max_concurrent_requests: u32,
    /// Requests waiting (FIFO) for one of those slots before new ones are refused with 503.
    pub max_queued_requests: u32,
    /// The largest request body accepted (413 past it).
    pub max_request_body_bytes: u64,
}

impl Default for AppLimits {
    fn default() -> Self {
        Self {
            request_timeout_ms: 30_000,
            memory_mib: 128,
            max_concurrent_requests: 100,
            max_queued_requests: 100,
            max_request_body_bytes: 10 << 20,
        }
    }
}

impl AppLimits {
    /// [`Self::request_timeout_ms`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// [`Self::memory_mib`] in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// One limit's name (as written in `limits`) and its allowed range.
pub struct LimitField {
    /// The field name, e.g. `request_timeout_ms`.
    pub name: &'static str,
    /// The smallest allowed value.
    pub min: u64,
    /// The largest allowed value.
    pub max: u64,
}

/// Every limit field with its allowed range; the command-line options use the same ranges.
pub const LIMIT_FIELDS: [LimitField; 5] = [
    LimitField {
        name: "request_timeout_ms",
        min: 1,
        max: 86_400_000,
    },
    // Each instance's memories live in the engine's pool slots of at most 4 GiB.
    LimitField {
        name: "memory_mib",
        min: 1,
        max: 4096,
    },
    LimitField {
        name: "max_concurrent_requests",
        min: 1,
        max: 100_000,
    },
    LimitField {
        name: "max_queued_requests",
        min: 0,
        max: 1_000_000,
    },
    LimitField {
        name: "max_request_body_bytes",
        min: 0,
        max: 1 << 40,
    },
];

/// The limits an app entry sets; `None` takes the host-wide default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    /// `request_timeout_ms`.
    pub request_timeout_ms: Option<u64>,
    /// `memory_mib`.
    pub memory_mib: Option<u64>,
    /// `max_concurrent_requests`.
    pub max_concurrent_requests: Option<u32>,
    /// `max_queued_requests`.
    pub max_queued_requests: Option<u32>,
    /// `max_request_body_bytes`.
    pub max_request_body_bytes: Option<u64>,
}

impl LimitOverrides {
    /// Read a `limits` JSON value. Every problem is returned as `(field, message)` with the
    /// field written `limits.<name>`.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, Vec<(&'static str, String)>> {
        let Some(object) = value.as_object() else {
            return Err(vec![(
                "limits",
                format!("must be an object of limits, found {value}"),
            )]);
        };
        let mut problems = Vec::new();
        for key in object.keys() {
            if !LIMIT_FIELDS.iter().any(|f| f.name == key) {
                let known: Vec<&str> = LIMIT_FIELDS.iter().map(|f| f.name).collect();
                problems.push((
                    "limits",
                    format!("unknown limit `{key}`; known limits: {}", known.join(", ")),
                ));
            }
        }
        let mut values = [None; 5];
        for (slot, field) in values.iter_mut().zip(LIMIT_FIELDS.iter()) {
            let Some(v) = object.get(field.name) else {
                continue;
            };
            match v.as_u64() {
                Some(n) if (field.min..=field.max).contains(&n) => *slot = Some(n),
                _ => problems.push((
                    dotted(field.name),
                    format!(
                        "must be a whole number from {} to {}, found {v}",
                        field.min, field.max
                    ),
                )),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let small = |v: Option<u64>| v.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        Ok(Self {
            request_timeout_ms: values[0],
            memory_mib: values[1],
            max_concurrent_requests: small(values[2]),
            max_queued_requests: small(values[3]),
            max_request_body_bytes: values[4],
        })
    }

    /// These overrides over `defaults`.
    pub fn over(&self, defaults: &AppLimits) -> AppLimits {
        AppLimits {
            request_timeout_ms: self
                .request_timeout_ms
                .unwrap_or(defaults.request_timeout_ms),
            memory_mib: self.memory_mib.unwrap_or(defaults.memory_mib),
            max_concurrent_requests: self
                .max_concurrent_requests
                .unwrap_or(defaults.max_concurrent_requests),
            max_queued_requests: self
                .max_queued_requests
                .unwrap_or(defaults.max_queued_requests),
            max_request_body_bytes: self
                .max_request_body_bytes
                .unwrap_or(defaults.max_request_body_bytes),
        }
    }
}

fn dotted(name: &'static str) -> &'static str {
    match name {
        "request_timeout_ms" => "limits.request_timeout_ms",
        "memory_mib" => "limits.memory_mib",
        "max_concurrent_requests" => "limits.max_concurrent_requests",
        "max_queued_requests" => "limits.max_queued_requests",
        "max_request_body_bytes" => "limits.max_request_body_bytes",
        _ => "limits",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_limits_win_over_defaults_and_the_rest_are_defaults() {
        let o = LimitOverrides::from_json(&json!({ "request_timeout_ms": 500, "memory_mib": 64 }))
            .expect("valid");
        let eff = o.over(&AppLimits::default());
        assert_eq!(eff.request_timeout_ms, 500);
        assert_eq!(eff.memory_mib, 64);
        assert_eq!(
            eff.max_concurrent_requests,
            AppLimits::default().max_concurrent_requests
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let err = LimitOverrides::from_json(&json!({
            "request_timeout_ms": 0, "memory_mib": "lots", "max_queued_requests": -1, "cpu": 2
        }))
        .expect_err("invalid");
        let fields: Vec<&str> = err.iter().map(|(f, _)| *f).collect();
        assert!(fields.contains(&"limits.request_timeout_ms"), "{err:?}");
        assert!(fields.contains(&"limits.memory_mib"), "{err:?}");
        assert!(fields.contains(&"limits.max_queued_requests"), "{err:?}");
        assert!(
            err.iter()
                .any(|(f, m)| *f == "limits" && m.contains("`cpu`"))
        );
        assert!(LimitOverrides::from_json(&json!([1])).is_err());
    }

    #[test]
    fn an_empty_object_changes_nothing() {
        let o = LimitOverrides::from_json(&json!({})).expect("valid");
        assert_eq!(o, LimitOverrides::default());
        assert_eq!(o.over(&AppLimits::default()), AppLimits::default());
    }
}
